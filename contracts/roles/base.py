"""What every role shares: a name for messages, the store's clock, and closing."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class StoreHandle(Protocol):
    @property
    def name(self) -> str:
        """A human label for errors and logs (a path or a URL, never a credential)."""
        ...

    async def now_ms(self) -> int:
        """The store's clock: every lease, retry and schedule is measured against it."""
        ...

    async def aclose(self) -> None: ...
