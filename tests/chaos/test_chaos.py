"""`make chaos`, short: the same scenarios and the same invariants, at a size for `make test`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos.fleet import FleetPlan, run_fleet
from bench.chaos.report import Report
from bench.chaos.store_storm import StormPlan, run_storm

pytestmark = pytest.mark.slow


def _held(report: Report) -> None:
    assert report.ok, "\n".join([*report.violations, *(f"{k}: {v}" for k, v in report.figures.items())])


def test_the_store_keeps_every_invariant_under_a_sigkill_storm(tmp_path: Path) -> None:
    plan = StormPlan(messages=1_000, conversations=40, workers=4, kill_every_s=1.0, lease_ttl_ms=1_000, hold_ms=(2, 8))
    report = run_storm(plan, tmp_path)
    _held(report)
    assert int(report.figures["kills (SIGKILL)"].replace(",", "")) >= 3  # the storm did blow


@pytest.mark.gateway
def test_a_fleet_whose_gateway_is_sigkilled_mid_turn_loses_nothing_and_answers_once(tmp_path: Path) -> None:
    """The gateway dies with turns in flight and comes back on the same state: nothing is dead-lettered
    or spends an attempt for it, and each message gets one reply and one turn in the agent's session."""
    plan = FleetPlan(
        messages=12,
        conversations=4,
        workers=2,
        worker_kill_every_s=25,
        gateway_kill_at=0.3,
        slow_ms=(1_000, 2_500),
        lease_ttl_ms=4_000,
        timeout_s=900,
    )
    report = run_fleet(plan, tmp_path)
    _held(report)
