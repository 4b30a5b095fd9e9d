"""The worker role: what a worker process needs to claim, run and settle messages."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.models import (
    AppendRequest,
    AppendResult,
    ClaimedJob,
    ControlState,
    FailRequest,
    FailResult,
    HydrationBundle,
    LeaseRef,
    LeaseResult,
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

    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> ClaimedJob | None:
        """Lease the best due head message, or None. An empty claim refreshes the heartbeat."""
        ...

    async def worker_heartbeat(self, lease: LeaseRef) -> LeaseResult:
        """Extend a live lease to the store's TTL; a refusal says why (stop the job)."""
        ...

    async def worker_complete(self, lease: LeaseRef) -> LeaseResult:
        """Mark the message done; a replay of an accepted complete is accepted again."""
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

    async def wait_for_work(self, timeout_s: float) -> bool:
        """Sleep until the store may have work, or the timeout passes. True if woken early."""
        ...
