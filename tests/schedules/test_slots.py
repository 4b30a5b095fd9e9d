"""Slot math against a brute-force reference that walks the clock minute by minute.

The reference is the rule in schedules/slots.py taken literally: a day's slot is the first minute
whose local date is that day and whose local time is at or after HH:mm. Zones and dates are drawn
around daylight-saving transitions (gaps and overlaps, 30-minute shifts, southern hemisphere).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.push import Schedule
from schedules.slots import describe, latest_slot, next_slot, runs_on, slot_on, time_of_day, zone_of

MINUTE = 60_000
ZONES = [
    "America/New_York",
    "Europe/Rome",
    "Europe/London",
    "Australia/Lord_Howe",  # a 30-minute shift
    "America/Santiago",  # southern hemisphere, transitions at local midnight
    "America/St_Johns",  # a half-hour offset
    "Asia/Tehran",
    "Asia/Kolkata",  # no DST
    "UTC",
]


def ms(zone: str, year: int, month: int, day: int, hour: int, minute: int) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(zone)).timestamp() * 1000)


def brute_slots(schedule: Schedule, start_ms: int, end_ms: int) -> list[int]:
    """Every slot in [start_ms, end_ms], walking UTC minute by minute."""
    zone, at = zone_of(schedule), time_of_day(schedule)
    seen: set[date] = set()
    slots = []
    u = (start_ms // MINUTE - 2 * 24 * 60) * MINUTE  # mark the days that began before the window
    while u <= end_ms:
        local = datetime.fromtimestamp(u / 1000, tz=UTC).astimezone(zone)
        day = local.date()
        if day not in seen and local.time().replace(tzinfo=None) >= at and runs_on(schedule, day):
            seen.add(day)
            if u >= start_ms:
                slots.append(u)
        u += MINUTE
    return slots


times = st.one_of(
    st.sampled_from(["00:00", "00:30", "01:00", "01:30", "02:00", "02:30", "02:59", "03:00", "23:30"]),
    st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59)),
)
# Dates near the usual transition months, so gaps and overlaps come up often.
instants = st.builds(
    lambda zone, year, month, day, hour, minute: (zone, ms(zone, year, month, day, hour, minute)),
    st.sampled_from(ZONES),
    st.integers(2000, 2037),
    st.sampled_from([3, 4, 9, 10, 11]),
    st.integers(1, 28),
    st.integers(0, 23),
    st.integers(0, 59),
)


@st.composite
def schedules(draw: st.DrawFn, zone: str) -> Schedule:
    kind = draw(st.sampled_from(["daily", "weekly", "monthly"]))
    at = draw(times)
    if kind == "weekly":
        return Schedule(kind="weekly", at=at, tz=zone, weekdays=tuple(draw(st.sets(st.integers(1, 7), min_size=1))))
    if kind == "monthly":
        last: Literal["last"] = "last"
        day = draw(st.one_of(st.integers(1, 31), st.just(last)))
        return Schedule(kind="monthly", at=at, tz=zone, day=day)
    return Schedule(kind="daily", at=at, tz=zone)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), start=instants)
def test_the_next_slot_is_never_missed_duplicated_or_in_the_past(data: st.DataObject, start: tuple[str, int]) -> None:
    zone, after = start
    schedule = data.draw(schedules(zone))
    # Three consecutive slots: each strictly later than the last, none skipped in between.
    found = []
    cursor = after
    for _ in range(3):
        cursor = next_slot(schedule, cursor)
        found.append(cursor)
    assert found[0] > after
    assert found == sorted(set(found))
    window_end = found[-1] if schedule.kind != "monthly" else found[0]
    expected = brute_slots(schedule, after + 1, window_end)
    assert expected == found[: len(expected)]
    assert len(expected) == (3 if schedule.kind != "monthly" else 1)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), start=instants)
def test_the_latest_slot_is_the_one_before_the_next(data: st.DataObject, start: tuple[str, int]) -> None:
    zone, now = start
    schedule = data.draw(schedules(zone))
    latest = latest_slot(schedule, now)
    assert latest is not None and latest <= now
    assert next_slot(schedule, latest) > now


def test_a_gap_runs_at_the_first_valid_minute_and_an_overlap_runs_once() -> None:
    ny = Schedule(kind="daily", at="02:30", tz="America/New_York")
    # 2024-03-10: 02:00 → 03:00. The 02:30 slot runs at 03:00 EDT (07:00 UTC).
    assert slot_on(ny, date(2024, 3, 10)) == ms("UTC", 2024, 3, 10, 7, 0)
    # 2024-11-03: 02:00 → 01:00. A 01:30 slot runs at the first 01:30 (EDT, 05:30 UTC), once.
    fall = Schedule(kind="daily", at="01:30", tz="America/New_York")
    first = ms("UTC", 2024, 11, 3, 5, 30)
    assert slot_on(fall, date(2024, 11, 3)) == first
    assert next_slot(fall, first) == ms("UTC", 2024, 11, 4, 6, 30)  # the next day, not the second 01:30


def test_monthly_days_clamp_to_the_month_and_last_means_last() -> None:
    rome = Schedule(kind="monthly", at="09:00", tz="Europe/Rome", day=31)
    assert next_slot(rome, ms("Europe/Rome", 2025, 2, 1, 0, 0)) == ms("Europe/Rome", 2025, 2, 28, 9, 0)
    leap = Schedule(kind="monthly", at="09:00", tz="Europe/Rome", day="last")
    assert next_slot(leap, ms("Europe/Rome", 2024, 2, 1, 0, 0)) == ms("Europe/Rome", 2024, 2, 29, 9, 0)


def test_weekly_runs_on_its_weekdays_only() -> None:
    schedule = Schedule(kind="weekly", at="08:15", tz="UTC", weekdays=(5, 1, 1))
    assert schedule.weekdays == (1, 5)
    monday = ms("UTC", 2026, 11, 30, 8, 15)  # a Monday
    assert next_slot(schedule, monday - 1) == monday
    assert next_slot(schedule, monday) == ms("UTC", 2026, 12, 4, 8, 15)  # Friday
    assert describe(schedule) == "weekly on Mon,Fri at 08:15 UTC"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "daily", "at": "9:00"}, "HH:mm"),
        ({"kind": "daily", "at": "24:00"}, "HH:mm"),
        ({"kind": "daily", "at": "09:00", "tz": "Mars/Olympus"}, "IANA time zone"),
        ({"kind": "weekly", "at": "09:00"}, "at least one weekday"),
        ({"kind": "weekly", "at": "09:00", "weekdays": (8,)}, "less than or equal to 7"),
        ({"kind": "monthly", "at": "09:00"}, "day of the month"),
        ({"kind": "monthly", "at": "09:00", "day": 32}, "less than or equal to 31"),
        ({"kind": "daily", "at": "09:00", "day": 3}, "only a monthly schedule"),
    ],
)
def test_bad_schedules_name_the_problem(fields: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Schedule.model_validate(fields)
