"""The Channel seam: send an agent's reply on to where the message came from."""

from __future__ import annotations

from typing import Protocol

from contracts.models import ClaimedJob, HydrationBundle


class Channel(Protocol):
    async def send(self, job: ClaimedJob, bundle: HydrationBundle, reply: str) -> None:
        """Deliver ``reply`` to the user. Raises ``worker.errors.ChannelError`` on failure."""
        ...

    async def aclose(self) -> None: ...
