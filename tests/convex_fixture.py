"""The Convex stand-in for tests: the module under convex-test behind Convex's HTTP API.

One process per test session, shared by the contract suite, the binding's tests and the CLI's.
Tests that use it reset its state first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from contracts.convex.standin import StandIn


@pytest.fixture(scope="session")
def convex_standin() -> Iterator[StandIn]:
    standin = StandIn.start(os.environ)
    try:
        yield standin
    finally:
        standin.stop()
