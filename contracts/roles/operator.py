"""The operator role: views of the queue and the fleet, and the actions that repair them."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.models import (
    Conversation,
    ConversationSummary,
    DeadLetter,
    MessageRecord,
    QueueStats,
    RedriveResult,
    ReleaseResult,
    SettledWindow,
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

    async def search_conversations(self, query: str = "", limit: int = 50) -> list[ConversationSummary]:
        """Conversations whose id starts with ``query``, of the agent ``query`` names, or started by
        the provider user ``query``; an empty query lists the newest. Newest first."""
        ...

    async def conversation_records(self, conversation_id: str, limit: int = 100) -> list[MessageRecord]:
        """The conversation's latest messages, oldest first, with attempts, lease holder and timings."""
        ...

    async def settled_since(self, since_ms: int, limit: int = 10_000) -> SettledWindow:
        """Messages that finished (done or dead-lettered) at or after ``since_ms``, newest first, at
        most ``limit``: the raw material of throughput and enqueue→reply latency."""
        ...
