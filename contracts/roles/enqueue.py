"""The enqueue role: getting a message into a conversation's queue."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.models import EnqueueRequest
from contracts.roles.base import StoreHandle


@runtime_checkable
class EnqueueStore(StoreHandle, Protocol):
    async def enqueue(self, request: EnqueueRequest) -> str:
        """Queue a message; the same (conversationId, externalMessageId) returns the first id."""
        ...
