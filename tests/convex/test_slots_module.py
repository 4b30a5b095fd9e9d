"""The Convex module's own slot math (for its cron) agrees with the Python reference."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.convex import ConvexClient
from contracts.convex.standin import StandIn
from contracts.models import to_wire
from contracts.push import Schedule
from schedules.slots import next_slot

pytestmark = [pytest.mark.convex]
ZONES = ["America/New_York", "Europe/Rome", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata", "UTC"]


@st.composite
def cases(draw: st.DrawFn) -> tuple[Schedule, int]:
    zone = draw(st.sampled_from(ZONES))
    at = draw(st.sampled_from(["00:00", "00:30", "01:30", "02:00", "02:30", "03:15", "09:00", "23:45"]))
    kind = draw(st.sampled_from(["daily", "weekly", "monthly"]))
    if kind == "weekly":
        schedule = Schedule(kind="weekly", at=at, tz=zone, weekdays=tuple(draw(st.sets(st.integers(1, 7), min_size=1))))
    elif kind == "monthly":
        last: object = "last"
        schedule = Schedule.model_validate(
            {"kind": "monthly", "at": at, "tz": zone, "day": draw(st.one_of(st.integers(1, 31), st.just(last)))}
        )
    else:
        schedule = Schedule(kind="daily", at=at, tz=zone)
    # Around the usual transition months, 2000–2037.
    after = draw(st.integers(946_684_800_000, 2_145_916_800_000))
    return schedule, after


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_the_module_and_python_agree_on_the_next_slot(convex_standin: StandIn, case: tuple[Schedule, int]) -> None:
    schedule, after = case

    async def ask() -> int:
        client = ConvexClient(convex_standin.url, namespace="agentFactory")
        try:
            return int(await client.query("pushNextSlot", {"schedule": to_wire(schedule), "afterMs": after}))
        finally:
            await client.aclose()

    convex_standin.reset(env={"FACTORY_AUTH": "open"})
    assert anyio.run(ask) == next_slot(schedule, after)
