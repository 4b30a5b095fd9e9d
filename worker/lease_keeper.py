"""Keep a job's lease alive, and end the job the moment the lease is lost.

A job never outlives its lease: the keeper heartbeats every third of the TTL; when the store
answers False, or no heartbeat has succeeded before the lease would expire, it cancels the
job's scope. The job's owner then sends nothing more for it: no reply, no complete, no fail.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import structlog

from contracts.errors import FactoryError
from contracts.models import LeaseRef
from contracts.store import Store

log = structlog.get_logger("worker.lease")


@dataclass
class LeaseState:
    """What the keeper learned; read by the job's owner after the job scope exits."""

    lost: bool = False
    reason: str = ""


async def keep_lease(
    store: Store,
    lease: LeaseRef,
    *,
    ttl_s: float,
    claimed_at: float,
    job_scope: anyio.CancelScope,
    state: LeaseState,
) -> None:
    """Heartbeat until cancelled; on loss, mark ``state`` and cancel ``job_scope``.

    ``claimed_at`` is the local monotonic time the claim was *sent*: the store's lease began
    after that, so counting the TTL from it never overestimates what is left.
    """
    interval = ttl_s / 3
    deadline = claimed_at + ttl_s
    next_beat = claimed_at + interval
    while True:
        await anyio.sleep_until(min(next_beat, deadline))
        now = anyio.current_time()
        if now >= deadline:
            _lose(state, job_scope, lease, "no successful heartbeat before the lease expired")
            return
        sent = now
        ok: bool | None = None
        with anyio.move_on_after(deadline - sent):
            try:
                ok = await store.worker_heartbeat(lease)
            except FactoryError as exc:
                # The store did not answer; the lease may still be ours. Try again soon.
                log.warning("heartbeat failed", message_id=lease.message_id, error=str(exc))
        if ok is True:
            deadline = sent + ttl_s
            next_beat = sent + interval
        elif ok is False:
            _lose(state, job_scope, lease, "the store no longer recognises this lease")
            return
        else:
            next_beat = anyio.current_time() + min(interval, 2.0)


def _lose(state: LeaseState, job_scope: anyio.CancelScope, lease: LeaseRef, reason: str) -> None:
    state.lost, state.reason = True, reason
    log.warning("lease lost; cancelling the job", message_id=lease.message_id, reason=reason)
    job_scope.cancel()
