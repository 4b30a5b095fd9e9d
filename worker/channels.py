"""The Channel seam: send an agent's reply on to where the message came from."""

from __future__ import annotations

from typing import Protocol

from contracts.models import ClaimedJob, HydrationBundle, MessagePayload
from contracts.push import SYSTEM_PUSH


class Channel(Protocol):
    async def send(self, job: ClaimedJob, bundle: HydrationBundle, reply: str) -> None:
        """Deliver ``reply`` to the user. Raises ``worker.errors.ChannelError`` on failure."""
        ...

    async def aclose(self) -> None: ...


def channel_for(payload: MessagePayload) -> str:
    """The channel a reply goes out on: the provider's own, except that an agent speaking first
    (a push, a broadcast) in a Telegram conversation answers in that Telegram chat."""
    if payload.provider == SYSTEM_PUSH and "telegramChatId" in (payload.metadata or {}):
        return "telegram"
    return payload.provider
