"""An injected ``sleep`` for code that waits between tries: nothing really waits in tests."""

from __future__ import annotations

import anyio.lowlevel


class RecordingSleep:
    """An injected ``sleep`` that returns at once and remembers what it was asked to wait."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await anyio.lowlevel.checkpoint()
