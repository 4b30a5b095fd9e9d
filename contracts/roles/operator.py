"""The operator role: views of the queue and the fleet, and the actions that repair them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.models import (
    Conversation,
    DeadLetter,
    MessageRecord,
    QueueStats,
    RedriveResult,
    ReleaseResult,
    SetWorkerStatusRequest,
    WorkerRecord,
)
from contracts.roles.base import StoreHandle


@runtime_checkable
class OperatorStore(StoreHandle, Protocol):
    async def queue_stats(self) -> QueueStats: ...

    async def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def redrive(self, message_id: str | None = None) -> RedriveResult:
        """Re-queue one dead letter, or every dead letter when ``message_id`` is None."""
        ...

    async def release_expired(self) -> ReleaseResult: ...

    async def get_message(self, message_id: str) -> MessageRecord | None: ...

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> Conversation | None: ...

    async def list_workers(self) -> list[WorkerRecord]: ...

    async def fleet_set_worker_status(self, request: SetWorkerStatusRequest) -> bool:
        """Drain (or stop) a worker by hand; the same action the autoscaler takes."""
        ...
