"""The platform-API boundary's retry: its pure predicate and defaults over ``contracts.retry``.

What is retried is decided by the error, not at the call site: a ``ProviderError`` says whether a
later try may succeed (``retryable``) and whether the call may have taken effect anyway
(``ambiguous``). Only retryable, unambiguous errors are retried here. An ambiguous error (a create
that timed out, got a 5xx or lost its response) surfaces at once: the machine may exist, so the
caller looks it up by launch id instead of creating a second one.

When the server names a delay (429 with Retry-After, DigitalOcean's ratelimit-reset) the policy
waits that long instead of its own back-off, capped so one call cannot stall a reconcile tick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import anyio

from autoscaler.errors import ProviderError
from contracts.retry import RetryPolicy, Sleep, retrying

__all__ = ["PLATFORM_RETRY", "call_with_retry", "is_retryable"]

T = TypeVar("T")

# Fleet-API notes §6.4: a few tries, 0.5 s doubling to 8 s with as much jitter, server delays up to a minute.
PLATFORM_RETRY = RetryPolicy(attempts=4, initial_s=0.5, max_s=8.0, jitter_s=0.5, max_retry_after_s=60.0)


def is_retryable(exc: BaseException) -> bool:
    """True when trying the same call again is both useful and safe."""
    return isinstance(exc, ProviderError) and exc.retryable and not exc.ambiguous


def _server_delay(exc: BaseException) -> float | None:
    return exc.retry_after_s if isinstance(exc, ProviderError) else None


def _describe(exc: BaseException) -> Mapping[str, object]:
    return {
        "provider": getattr(exc, "provider", None),
        "operation": getattr(exc, "operation", None),
        "status": getattr(exc, "status", None),
        # ProviderError messages are built without secrets (see autoscaler.providers._common).
        "error": str(exc),
    }


async def call_with_retry(
    call: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None, sleep: Sleep = anyio.sleep
) -> T:
    """Run ``call`` until it succeeds, raises something not worth retrying, or attempts run out."""
    async for attempt in retrying(
        policy if policy is not None else PLATFORM_RETRY,
        retry=is_retryable,
        event="provider call retrying",
        describe=_describe,
        server_delay=_server_delay,
        sleep=sleep,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
