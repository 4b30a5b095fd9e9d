"""One contract suite, many stores: every test here runs against each binding in STORE_KINDS.

A binding joins the suite by adding its kind to STORE_KINDS and a branch to ``harness`` that
yields a :class:`Harness`: the store under test plus a way to move that store's clock.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.clock import ManualClock
from contracts.rules import QueuePolicy
from contracts.sqlite import SqliteStore
from contracts.store import Store

STORE_KINDS = ["sqlite"]
# The policy every binding is configured with in this suite (Convex: the module's defaults).
POLICY = QueuePolicy(lease_ttl_ms=60_000)


@dataclass
class Harness:
    store: Store
    advance: Callable[[int], Awaitable[None]]
    kind: str


@pytest.fixture(params=STORE_KINDS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = request.param
    if kind == "sqlite":
        clock = ManualClock()
        store = SqliteStore(tmp_path / "contract.db", clock=clock, rng=random.Random(7), policy=POLICY)

        async def advance(ms: int) -> None:
            clock.advance(ms)

        try:
            yield Harness(store=store, advance=advance, kind=kind)
        finally:
            await store.aclose()
    else:  # pragma: no cover - a kind listed without a branch is a bug in this file
        raise AssertionError(f"no harness for store kind {kind!r}")
