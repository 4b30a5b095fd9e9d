"""The one retry policy for platform API calls, and the pure predicate behind it.

What is retried is decided by the error, not at the call site: a ``ProviderError`` says whether a
later try may succeed (``retryable``) and whether the call may have taken effect anyway
(``ambiguous``). Only retryable, unambiguous errors are retried here. An ambiguous error (a create
that timed out, got a 5xx or lost its response) surfaces at once: the machine may exist, so the
caller looks it up by launch id instead of creating a second one.

When the server names a delay (429 with Retry-After, DigitalOcean's ratelimit-reset) the policy
waits that long instead of its own back-off, capped so one call cannot stall a reconcile tick.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import structlog
import tenacity
from pydantic import BaseModel, ConfigDict, Field

from autoscaler.errors import ProviderError
from autoscaler.ratelimit import Sleep

__all__ = ["RetryPolicy", "call_with_retry", "is_retryable", "retrying"]

T = TypeVar("T")

_log = structlog.get_logger(__name__)


def is_retryable(exc: BaseException) -> bool:
    """True when trying the same call again is both useful and safe."""
    return isinstance(exc, ProviderError) and exc.retryable and not exc.ambiguous


class RetryPolicy(BaseModel):
    """Attempts and back-off for one platform boundary (defaults: §6.4 of the fleet-API notes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=4, ge=1)
    initial_s: float = Field(default=0.5, ge=0)
    max_s: float = Field(default=8.0, ge=0)
    jitter_s: float = Field(default=0.5, ge=0)
    # A server-named delay longer than this is clamped: the next tick can try again instead.
    max_retry_after_s: float = Field(default=60.0, ge=0)


class _WaitRetryAfter(tenacity.wait.wait_base):
    """Wait what the server asked for when it asked; otherwise fall back to ``backoff``."""

    def __init__(self, backoff: tenacity.wait.wait_base, cap_s: float) -> None:
        self._backoff = backoff
        self._cap_s = cap_s

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
            return min(max(exc.retry_after_s, 0.0), self._cap_s)
        return self._backoff(retry_state)


def _log_retry(retry_state: tenacity.RetryCallState) -> None:
    outcome = retry_state.outcome
    exc = outcome.exception() if outcome is not None else None
    next_action = retry_state.next_action
    _log.warning(
        "provider call retrying",
        attempt=retry_state.attempt_number,
        sleep_s=round(next_action.sleep, 3) if next_action is not None else None,
        provider=getattr(exc, "provider", None),
        operation=getattr(exc, "operation", None),
        status=getattr(exc, "status", None),
        # ProviderError messages are built without secrets (see autoscaler.providers._common).
        error=str(exc),
    )


def retrying(policy: RetryPolicy | None = None, *, sleep: Sleep = anyio.sleep) -> tenacity.AsyncRetrying:
    """A fresh ``AsyncRetrying`` for one call under ``policy``; the last error is re-raised."""
    policy = policy if policy is not None else RetryPolicy()
    backoff = tenacity.wait_exponential_jitter(multiplier=policy.initial_s, max=policy.max_s, jitter=policy.jitter_s)
    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=tenacity.stop_after_attempt(policy.attempts),
        wait=_WaitRetryAfter(backoff, policy.max_retry_after_s),
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=_log_retry,
        reraise=True,
    )


async def call_with_retry(
    call: Callable[[], Awaitable[T]], *, policy: RetryPolicy | None = None, sleep: Sleep = anyio.sleep
) -> T:
    """Run ``call`` until it succeeds, raises something not worth retrying, or attempts run out."""
    async for attempt in retrying(policy, sleep=sleep):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
