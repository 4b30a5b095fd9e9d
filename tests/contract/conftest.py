"""One contract suite, many stores: every test here runs against each binding in STORE_KINDS.

A binding joins the suite by adding its kind to STORE_KINDS and a branch to ``harness`` that
yields a :class:`Harness`: the store under test plus a way to move that store's clock.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from contracts.clock import ManualClock
from contracts.sqlite import SqliteStore
from tests.contract.helpers import TEST_BOX, Store

if TYPE_CHECKING:
    from contracts.convex.standin import StandIn

STORE_KINDS = ["sqlite", "convex"]
# Marks per kind, so `-m "not convex"` runs the suite without Node.
KIND_MARKS = {"convex": [pytest.mark.convex]}
# The lease length every binding hands out in this suite (Convex: the module's default).
LEASE_TTL_MS = 60_000


@dataclass
class Harness:
    store: Store
    advance: Callable[[int], Awaitable[None]]
    kind: str
    # A second client of the same store, as another process would open it (the caller closes it).
    twin: Callable[[], Store]


@pytest.fixture(params=[pytest.param(kind, marks=KIND_MARKS.get(kind, [])) for kind in STORE_KINDS])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind = request.param
    if kind == "sqlite":
        clock = ManualClock()
        store = SqliteStore(
            tmp_path / "contract.db",
            clock=clock,
            rng=random.Random(7),
            lease_ttl_ms=LEASE_TTL_MS,
            secrets_box=TEST_BOX,
        )

        async def advance(ms: int) -> None:
            clock.advance(ms)

        def sqlite_twin() -> Store:
            return SqliteStore(tmp_path / "contract.db", clock=clock, secrets_box=TEST_BOX)

        try:
            yield Harness(store=store, advance=advance, kind=kind, twin=sqlite_twin)
        finally:
            await store.aclose()
    elif kind == "convex":
        from contracts.convex import ConvexStore

        standin: StandIn = request.getfixturevalue("convex_standin")
        # Fresh module state per test, its clock frozen where the SQLite harness's starts.
        standin.reset(env={"FACTORY_AUTH": "open"}, frozen_at_ms=ManualClock().now_ms())
        convex = ConvexStore(standin.url, wait_poll_s=0.05, secrets_box=TEST_BOX)

        async def advance_convex(ms: int) -> None:
            await anyio.to_thread.run_sync(standin.advance, ms)

        def convex_twin() -> Store:
            return ConvexStore(standin.url, wait_poll_s=0.05, secrets_box=TEST_BOX)

        try:
            yield Harness(store=convex, advance=advance_convex, kind=kind, twin=convex_twin)
        finally:
            await convex.aclose()
    else:  # pragma: no cover - a kind listed without a branch is a bug in this file
        raise AssertionError(f"no harness for store kind {kind!r}")
