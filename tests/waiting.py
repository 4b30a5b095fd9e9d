"""Waits that end early (a doorbell, a subscription): start one, act while it waits, and see
whether it woke and how long it took."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


async def wait_while(
    wait: Callable[[], Awaitable[bool]], act: Callable[[], Awaitable[object]], *, after_s: float
) -> tuple[bool, float]:
    """Run ``wait()``, and ``act()`` ``after_s`` into it; (what the wait returned, seconds it took)."""
    result: list[bool] = []
    started = anyio.current_time()
    async with anyio.create_task_group() as tg:

        async def waiting() -> None:
            result.append(await wait())

        tg.start_soon(waiting)
        await anyio.sleep(after_s)
        await act()
    return result[0], anyio.current_time() - started
