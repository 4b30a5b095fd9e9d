"""Keep a job's lease alive, and end the job the moment the lease is lost.

A job never outlives its lease. The lease's length is the store's: the keeper paces itself from
what the store answered (the claim's ``leaseExpiresAt``, then each heartbeat's), heartbeating three
times per lease (:func:`contracts.rules.heartbeat_interval_ms`). When the store refuses a heartbeat,
or none succeeds before the lease would expire, it cancels the job's scope; the job's owner then
sends no reply, no complete and no fail for it. When the store merely did not answer (an outage,
``LeaseState.unanswered``), nobody may have taken the message over yet, and the owner gives it back
once the store answers again: a fenced release, refused if someone did.

Every heartbeat answer also says whether the worker must stop (``control``): the keeper notes it
in ``LeaseState.stop``, the job in flight finishes, and the worker then drains without a control
call of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog

from contracts.errors import FactoryError
from contracts.models import ControlState, LeaseRef
from contracts.roles import WorkerStore
from contracts.rules import heartbeat_interval_ms, lease_remaining_ms

log = structlog.get_logger("worker.lease")
WallClockMs = Callable[[], int]


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class LeaseState:
    """What the keeper learned; read by the job's owner after the job scope exits."""

    lost: bool = False
    reason: str = ""
    # Lost because the store did not answer in time, rather than refused the lease.
    unanswered: bool = False
    # A heartbeat answer said the worker must stop: finish this job, then drain.
    stop: ControlState | None = None


@dataclass(frozen=True)
class Grant:
    """A lease as the store granted it: when we asked (local monotonic seconds) and what it said."""

    asked_at: float
    lease_expires_at: int
    store_now: int | None

    def remaining_s(self, wall_ms: WallClockMs) -> float:
        return lease_remaining_ms(self.lease_expires_at, self.store_now, wall_ms()) / 1000


async def keep_lease(
    store: WorkerStore,
    lease: LeaseRef,
    *,
    granted: Grant,
    job_scope: anyio.CancelScope,
    state: LeaseState,
    wall_ms: WallClockMs = wall_clock_ms,
) -> None:
    """Heartbeat until cancelled; on loss, mark ``state`` and cancel ``job_scope``.

    Deadlines count from the moment each call was *sent*: the store's lease began after that, so
    counting from it never overestimates what is left.
    """
    # The length of a renewal, by the last answer that told us; upstream's heartbeat answers a bare
    # yes, and extends by the same length it granted at the claim.
    renewal_ms = int(granted.remaining_s(wall_ms) * 1000)
    deadline = granted.asked_at + renewal_ms / 1000
    next_beat = granted.asked_at + heartbeat_interval_ms(renewal_ms) / 1000
    while True:
        await anyio.sleep_until(min(next_beat, deadline))
        now = anyio.current_time()
        if now >= deadline:
            state.unanswered = True
            _lose(state, job_scope, lease, "no successful heartbeat before the lease expired")
            return
        sent = now
        answer = None
        with anyio.move_on_after(deadline - sent):
            try:
                answer = await store.worker_heartbeat(lease)
            except FactoryError as exc:
                # The store did not answer; the lease may still be ours. Try again soon.
                log.warning("heartbeat failed", message_id=lease.message_id, error=str(exc))
        if answer is None:
            next_beat = anyio.current_time() + min((deadline - sent) / 3, 2.0)
        elif answer.ok:
            if answer.control is not None and answer.control.should_stop and state.stop is None:
                state.stop = answer.control
                log.info("told to stop; finishing the job in flight", message_id=lease.message_id)
            if answer.lease_expires_at is not None:
                renewal_ms = lease_remaining_ms(answer.lease_expires_at, answer.now, wall_ms())
            deadline = sent + renewal_ms / 1000
            next_beat = sent + heartbeat_interval_ms(renewal_ms) / 1000
        else:
            _lose(state, job_scope, lease, f"the store refused the heartbeat: {answer.refused or 'lease lost'}")
            return


def _lose(state: LeaseState, job_scope: anyio.CancelScope, lease: LeaseRef, reason: str) -> None:
    state.lost, state.reason = True, reason
    log.warning("lease lost; cancelling the job", message_id=lease.message_id, reason=reason)
    job_scope.cancel()
