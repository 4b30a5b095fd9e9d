"""The worker role: what a worker process needs to claim, run and settle messages.

A busy worker's steady state is one call per message: ``worker_claim(..., with_bundle=True)``
once, then ``worker_complete(lease, history=…, claim_next=NextClaim())`` for each job, which
settles it, records its history turns and claims the next job with its bundle in one
transaction; whether to stop rides on every claim, heartbeat and complete answer. The separate
calls (control state, hydration, append) stay for compat mode and for callers that want them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, overload, runtime_checkable

from contracts.models import (
    AppendRequest,
    AppendResult,
    ClaimedJob,
    ClaimResult,
    CompleteResult,
    ControlState,
    FailRequest,
    FailResult,
    HistoryMessage,
    HydrationBundle,
    LeaseRef,
    LeaseResult,
    NextClaim,
    ReleaseRequest,
    WorkerRecord,
    WorkerRegistration,
)
from contracts.roles.base import StoreHandle


@runtime_checkable
class WorkerStore(StoreHandle, Protocol):
    async def worker_register(self, registration: WorkerRegistration) -> WorkerRecord: ...

    async def worker_control_state(self, worker_id: str) -> ControlState:
        """Whether the worker must stop; a poll from an active worker refreshes its heartbeat."""
        ...

    @overload
    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> ClaimedJob | None: ...

    @overload
    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: Literal[True]
    ) -> ClaimResult: ...

    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: bool = False
    ) -> ClaimedJob | ClaimResult | None:
        """Lease the best due head message, or None. An empty claim refreshes the heartbeat.

        ``with_bundle``: answer a :class:`ClaimResult` instead, with the job's hydration bundle and
        the control state (an idle poll, a claim and hydration in one call).
        """
        ...

    async def worker_heartbeat(self, lease: LeaseRef) -> LeaseResult:
        """Extend a live lease to the store's TTL; a refusal says why (stop the job)."""
        ...

    async def worker_complete(
        self,
        lease: LeaseRef,
        *,
        history: Sequence[HistoryMessage] | None = None,
        claim_next: NextClaim | None = None,
    ) -> CompleteResult:
        """Mark the message done; a replay of an accepted complete is accepted again.

        ``history``: the turns to append to the conversation in the same transaction (once per
        message, as ``worker_append_conversation_messages`` with the message id). ``claim_next``:
        also claim the worker's next job, answered in ``next``.
        """
        ...

    async def worker_fail(self, request: FailRequest) -> FailResult:
        """Re-queue with backoff, or dead-letter when not retryable or out of attempts."""
        ...

    async def worker_release(self, request: ReleaseRequest) -> LeaseResult:
        """Give the message back without spending an attempt: the fault was not the message's."""
        ...

    async def worker_hydration_bundle(
        self, message_id: str, workspace_id: str = "default"
    ) -> HydrationBundle | None: ...

    async def worker_append_conversation_messages(self, request: AppendRequest) -> AppendResult: ...

    async def wait_for_work(self, timeout_s: float, conversation_id: str | None = None) -> bool:
        """Sleep until the store may have work, or the timeout passes. True if woken early.

        ``conversation_id``: a worker pinned to one conversation waits for that one alone."""
        ...
