"""The dispatcher: every due slot enqueued exactly once, however many dispatchers race or die."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from contracts.clock import ManualClock
from contracts.models import AgentProfile
from contracts.push import PushJob, PushTemplate, Schedule
from contracts.sqlite import SqliteStore
from schedules.dispatcher import dispatch_due, first_run_at, plan_slot, run_now
from schedules.slots import next_slot

pytestmark = pytest.mark.anyio
HOUR = 3_600_000
DAY = 24 * HOUR
WEEK_START = int(datetime(2026, 3, 23, tzinfo=UTC).timestamp() * 1000)  # spans Europe's DST change (29 March)
SCHEDULES = {
    "rome-daily": Schedule(kind="daily", at="09:00", tz="Europe/Rome"),
    "ny-gap": Schedule(kind="daily", at="02:30", tz="America/New_York"),
    "tokyo-weekly": Schedule(kind="weekly", at="18:45", tz="Asia/Tokyo", weekdays=(1, 3, 5)),
    "london-overlap": Schedule(kind="daily", at="01:30", tz="Europe/London"),
}


def job(job_id: str, schedule: Schedule, next_run_at: int, **fields: object) -> PushJob:
    return PushJob.model_validate(
        {"job_id": job_id, "template_id": "t", "conversation_id": f"c-{job_id}", "schedule": schedule}
        | {"next_run_at": next_run_at}
        | fields
    )


def test_a_job_is_due_only_from_its_next_run_and_moves_past_now() -> None:
    daily = Schedule(kind="daily", at="09:00", tz="UTC")
    nine = WEEK_START + 9 * HOUR
    j = job("j", daily, nine)
    assert plan_slot(j, nine - 1) is None
    on_time = plan_slot(j, nine + 30_000)
    assert on_time is not None
    assert (on_time.slot_at, on_time.run_key, on_time.next_run_at) == (nine, f"job:j:{nine}", nine + DAY)
    assert on_time.expected_next_run_at == nine and on_time.skip_reason is None
    assert plan_slot(j.model_copy(update={"enabled": False}), nine) is None


def test_a_dispatcher_down_for_days_runs_the_latest_missed_slot_once_or_skips_it() -> None:
    daily = Schedule(kind="daily", at="09:00", tz="UTC")
    nine = WEEK_START + 9 * HOUR
    three_days_later = nine + 3 * DAY + 2 * HOUR
    latest = plan_slot(job("j", daily, nine), three_days_later)
    assert latest is not None
    assert (latest.slot_at, latest.next_run_at) == (nine + 3 * DAY, nine + 4 * DAY)
    skipped = plan_slot(job("j", daily, nine, catch_up="skip", skip_after_s=3_600), three_days_later)
    assert skipped is not None and skipped.skip_reason is not None and "catch-up: skip" in skipped.skip_reason
    in_grace = plan_slot(job("j", daily, nine, catch_up="skip", skip_after_s=3 * 3_600), three_days_later)
    assert in_grace is not None and in_grace.skip_reason is None


async def _seed(path: Path, start_ms: int) -> list[str]:
    store = SqliteStore(path, synchronous="NORMAL")
    try:
        await store.push_template_put(PushTemplate(template_id="t", agent_key="default", text="hello"))
        for job_id, schedule in SCHEDULES.items():
            await store.push_job_put(job(job_id, schedule, first_run_at(schedule, start_ms)))
    finally:
        await store.aclose()
    return list(SCHEDULES)


def _expected_slots(start_ms: int, end_ms: int) -> dict[str, list[int]]:
    expected: dict[str, list[int]] = {}
    for job_id, schedule in SCHEDULES.items():
        slots, cursor = [], start_ms
        while (cursor := next_slot(schedule, cursor)) <= end_ms:
            slots.append(cursor)
        expected[job_id] = slots
    return expected


async def _dispatched(path: Path) -> tuple[Counter[str], dict[str, list[int]]]:
    store = SqliteStore(path)
    try:
        stats = await store.queue_stats()
        slots = {j: sorted(d.slot_at for d in await store.push_dispatches(j, 1000)) for j in SCHEDULES}
        records = [d for j in SCHEDULES for d in await store.push_dispatches(j, 1000)]
        keys = Counter(d.run_key for d in records if d.status == "enqueued")
        assert stats.queued == sum(keys.values())  # one message per dispatched slot, none twice
        return keys, slots
    finally:
        await store.aclose()


_RACER = textwrap.dedent(
    """
    import logging, sys, time, anyio, structlog
    from contracts.sqlite import SqliteStore
    from schedules.dispatcher import dispatch_due

    async def main(path, start, end, step, pause):
        store = SqliteStore(path, synchronous="NORMAL")
        for now in range(start, end + 1, step):
            await dispatch_due(store, now=now)
            if pause:
                time.sleep(pause)
        await store.aclose()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    """
)


def _racer(path: Path, start: int, end: int, step: int, pause: float = 0.0) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-c", _RACER, str(path), str(start), str(end), str(step), str(pause)]
    return subprocess.Popen(args, stderr=subprocess.PIPE)


async def test_four_dispatchers_racing_over_a_week_enqueue_every_slot_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    await _seed(db, WEEK_START)
    end = WEEK_START + 7 * DAY
    # Each walks the week in 10-minute steps, offset by a few seconds of "clock skew" from the others.
    racers = [_racer(db, WEEK_START + skew, end, 10 * 60_000) for skew in (0, 1_500, 3_000, 4_500)]
    for racer in racers:
        _, err = racer.communicate(timeout=240)
        assert racer.returncode == 0, err.decode()
    keys, slots = await _dispatched(db)
    assert all(count == 1 for count in keys.values())
    assert slots == _expected_slots(WEEK_START, end)  # every slot of the week, DST days included


async def test_a_dispatcher_killed_mid_pass_leaves_every_slot_to_run_once(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    await _seed(db, WEEK_START)
    end = WEEK_START + 7 * DAY
    victim = _racer(db, WEEK_START, end, 5 * 60_000, pause=0.001)
    await anyio.sleep(random.uniform(0.8, 1.6))
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    survivor = _racer(db, WEEK_START, end, 5 * 60_000)
    _, err = survivor.communicate(timeout=240)
    assert survivor.returncode == 0, err.decode()
    keys, slots = await _dispatched(db)
    assert all(count == 1 for count in keys.values())
    assert slots == _expected_slots(WEEK_START, end)


async def test_run_now_uses_its_own_run_key_and_a_pass_reports_what_it_did(tmp_path: Path) -> None:
    clock = ManualClock(WEEK_START)
    store = SqliteStore(tmp_path / "now.db", clock=clock)
    try:
        await store.upsert_agent_profile(AgentProfile(agent_key="default"))
        await store.push_template_put(PushTemplate(template_id="t", agent_key="default", text="hi"))
        daily = SCHEDULES["rome-daily"]
        await store.push_job_put(job("j", daily, first_run_at(daily, WEEK_START)))
        manual = await run_now(store, "j")
        assert manual.run_key == f"manual:j:{WEEK_START}" and manual.status == "enqueued"
        assert (await dispatch_due(store)).scanned == 0  # not due yet
        clock.advance(DAY)
        report = await dispatch_due(store)
        assert (report.scanned, report.count("enqueued")) == (1, 1)
        assert json.loads(report.dispatches[0].model_dump_json())["status"] == "enqueued"
        assert (await dispatch_due(store)).scanned == 0
    finally:
        await store.aclose()
