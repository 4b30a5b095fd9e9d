"""Fixtures for the Convex binding's tests: the stand-in (one per session) and fresh module state."""

from __future__ import annotations

import pytest

from contracts.clock import ManualClock
from contracts.convex.standin import StandIn

T0 = ManualClock().now_ms()


@pytest.fixture(scope="session")
def standin(convex_standin: StandIn) -> StandIn:
    return convex_standin


@pytest.fixture
def fresh(standin: StandIn) -> StandIn:
    """The stand-in with empty tables, anonymous callers allowed and the clock frozen at T0."""
    standin.reset(env={"FACTORY_AUTH": "open"}, frozen_at_ms=T0)
    return standin
