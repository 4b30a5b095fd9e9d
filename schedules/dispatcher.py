"""The dispatcher: enqueue every due push job's slot, exactly once.

Deciding is pure (:func:`plan_slot`: which slot of a due job runs, under which run key, and when
the job is due next); the store carries each decision out in one transaction that dedupes on the
run key and moves the job on only from the ``nextRunAt`` the dispatcher read. So any number of
dispatchers (cron with any interval, the loop inside ``factory serve``) may race, one may die
half-way, clocks may disagree by seconds: every slot is enqueued once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import anyio
import structlog

from contracts.errors import FactoryError
from contracts.push import PushDispatch, PushDispatchRequest, PushJob, Schedule
from contracts.roles import ScheduleStore
from schedules.slots import latest_slot, next_slot

log = structlog.get_logger("schedules.dispatcher")


def first_run_at(schedule: Schedule, now: int) -> int:
    """When a new (or re-scheduled, or re-enabled) job is first due: its next slot after now."""
    return next_slot(schedule, now)


def run_key(job_id: str, slot_at: int) -> str:
    return f"job:{job_id}:{slot_at}"


def plan_slot(job: PushJob, now: int) -> PushDispatchRequest | None:
    """What to do with one job at ``now``: None while it is not due.

    A due job runs its latest slot at or before now (a dispatcher that was down for hours runs the
    latest missed slot only, once). With ``catchUp: skip`` a slot older than ``skipAfterS`` is
    recorded as skipped instead. Either way the job moves on to its first slot after now.
    """
    if not job.enabled or job.next_run_at is None or job.next_run_at > now:
        return None
    latest = latest_slot(job.schedule, now)
    slot = latest if latest is not None and latest >= job.next_run_at else job.next_run_at
    late_ms = now - slot
    skip = None
    if job.catch_up == "skip" and late_ms > job.skip_after_s * 1000:
        skip = f"missed by {late_ms // 1000} s (catch-up: skip after {job.skip_after_s} s)"
    return PushDispatchRequest(
        job_id=job.job_id,
        run_key=run_key(job.job_id, slot),
        slot_at=slot,
        expected_next_run_at=job.next_run_at,
        next_run_at=next_slot(job.schedule, max(now, slot)),
        skip_reason=skip,
    )


@dataclass
class DispatchReport:
    """What one dispatch pass did; ``raced`` counts slots another dispatcher had already taken."""

    now: int
    scanned: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    dispatches: list[PushDispatch] = field(default_factory=list)

    def count(self, key: str) -> int:
        return self.outcomes[key]


async def dispatch_due(store: ScheduleStore, *, now: int | None = None, limit: int = 200) -> DispatchReport:
    """One pass over the jobs due at ``now`` (the store's clock unless given)."""
    at = now if now is not None else await store.now_ms()
    report = DispatchReport(now=at)
    for job in await store.push_jobs(due_at=at, limit=limit):
        request = plan_slot(job, at)
        if request is None:
            continue
        report.scanned += 1
        result = await store.push_dispatch(request)
        report.outcomes["raced" if not result.fresh else result.status] += 1
        if result.fresh:
            report.dispatches.append(result)
            log.info("push dispatched", job_id=job.job_id, run_key=result.run_key, status=result.status)
    return report


async def run_now(store: ScheduleStore, job_id: str, *, now: int | None = None) -> PushDispatch:
    """One message for the job out of schedule, under its own run key; the schedule is unchanged."""
    at = now if now is not None else await store.now_ms()
    request = PushDispatchRequest(job_id=job_id, run_key=f"manual:{job_id}:{at}", slot_at=at, mode="manual")
    return await store.push_dispatch(request)


async def dispatch_forever(store: ScheduleStore, *, interval_s: float = 30.0) -> None:
    """The loop inside ``factory serve``: a pass every interval; a store outage is waited out."""
    while True:
        try:
            await dispatch_due(store)
        except FactoryError as exc:
            log.warning("push dispatch pass failed; trying again next interval", error=str(exc))
        await anyio.sleep(interval_s)
