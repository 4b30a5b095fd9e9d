"""When a push job's slots fall: pure functions of a schedule and an instant (epoch milliseconds).

A slot is a wall-clock time (``HH:mm``) on the days a schedule picks, in an IANA time zone. The
rule for a day is one sentence, and it settles both daylight-saving cases:

    **a day's slot is the first instant whose local date is that day and whose local time is at or
    after HH:mm.**

* In a gap (clocks jump forward over HH:mm), that is the first valid minute after the gap: a 02:30
  slot on a spring-forward night in New York runs at 03:00.
* In an overlap (clocks fall back and HH:mm happens twice), that is the first occurrence: the slot
  runs once.

Days: daily (every day), weekly (a set of ISO weekdays, Monday = 1 … Sunday = 7), monthly (a day of
the month 1–31, clamped to the month's last day as upstream does, or ``"last"``).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from contracts.push import Schedule

# A day's slot is at most one gap away from HH:mm; real gaps are an hour or two (Lord Howe: 30 min).
_MAX_GAP_MINUTES = 24 * 60


def zone_of(schedule: Schedule) -> ZoneInfo:
    return ZoneInfo(schedule.tz)


def time_of_day(schedule: Schedule) -> time:
    hours, minutes = schedule.at.split(":")
    return time(int(hours), int(minutes))


def runs_on(schedule: Schedule, day: date) -> bool:
    if schedule.kind == "daily":
        return True
    if schedule.kind == "weekly":
        return day.isoweekday() in schedule.weekdays
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == (last if schedule.day == "last" else min(int(schedule.day or 0), last))


def describe(schedule: Schedule) -> str:
    if schedule.kind == "daily":
        days = "daily"
    elif schedule.kind == "weekly":
        days = "weekly on " + ",".join(calendar.day_abbr[d - 1] for d in schedule.weekdays)
    else:
        days = f"monthly on day {schedule.day}"
    return f"{days} at {schedule.at} {schedule.tz}"


def _exists(local: datetime, zone: ZoneInfo) -> bool:
    """Whether a naive local wall time exists in the zone (it is not inside a gap)."""
    aware = local.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local


def slot_on(schedule: Schedule, day: date) -> int | None:
    """The slot of one local day in epoch ms, or None when the schedule skips the day (or, in a
    zone that once skipped a whole calendar day, when the day has no time at or after HH:mm)."""
    if not runs_on(schedule, day):
        return None
    zone = zone_of(schedule)
    local = datetime.combine(day, time_of_day(schedule))
    for _ in range(_MAX_GAP_MINUTES):
        if local.date() != day:
            return None
        if _exists(local, zone):
            # fold=0 is the first occurrence of an ambiguous time: an overlap runs once.
            return int(local.replace(tzinfo=zone, fold=0).timestamp() * 1000)
        local += timedelta(minutes=1)
    return None


def _local_day(ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone).date()


def _days_from(start: date) -> Iterator[date]:
    day = start
    while True:
        yield day
        day += timedelta(days=1)


def next_slot(schedule: Schedule, after_ms: int) -> int:
    """The first slot strictly after ``after_ms``."""
    # A day's slot can fall after the day's start in UTC terms either way; start a day early.
    start = _local_day(after_ms, zone_of(schedule)) - timedelta(days=1)
    for day in _days_from(start):
        slot = slot_on(schedule, day)
        if slot is not None and slot > after_ms:
            return slot
    raise AssertionError("unreachable: every schedule has a slot within a few months")  # pragma: no cover


def latest_slot(schedule: Schedule, at_or_before_ms: int) -> int | None:
    """The last slot at or before the instant (looking back at most a year), or None."""
    day = _local_day(at_or_before_ms, zone_of(schedule)) + timedelta(days=1)
    for _ in range(400):
        slot = slot_on(schedule, day)
        if slot is not None and slot <= at_or_before_ms:
            return slot
        day -= timedelta(days=1)
    return None
