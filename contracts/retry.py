"""The one retry policy type and the one tenacity recipe behind every boundary that retries.

Each boundary keeps its own predicate (what may be repeated safely) and its own defaults; what
they share lives here: the policy's fields, exponential back-off with jitter, honouring a delay
the server named (capped), an injected ``sleep`` so tests never wait, re-raising the last error,
and one structured log line before each wait.
"""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable, Mapping

import anyio
import structlog
import tenacity
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RetryPolicy", "Sleep", "parse_retry_after", "retrying"]

Sleep = Callable[[float], Awaitable[None]]

_log = structlog.get_logger("retry")


class RetryPolicy(BaseModel):
    """How often and how patiently one boundary repeats a call that failed in a retryable way."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # None: no limit on the number of tries (then ``give_up_after_s`` usually bounds them).
    attempts: int | None = Field(default=4, ge=1)
    # Stop retrying once this long has passed since the first try (None: no time limit).
    give_up_after_s: float | None = Field(default=None, gt=0)
    initial_s: float = Field(default=0.5, ge=0)
    max_s: float = Field(default=8.0, ge=0)
    jitter_s: float = Field(default=0.5, ge=0)
    # A server-named delay longer than this is clamped: a later call can try again instead.
    max_retry_after_s: float = Field(default=60.0, ge=0)


def _error_fields(exc: BaseException) -> Mapping[str, object]:
    return {"error": str(exc)}


class _Wait(tenacity.wait.wait_base):
    """Wait what the server asked for when it asked (capped); otherwise back off exponentially."""

    def __init__(self, policy: RetryPolicy, server_delay: Callable[[BaseException], float | None] | None) -> None:
        self._backoff = tenacity.wait_exponential_jitter(
            multiplier=policy.initial_s, max=policy.max_s, jitter=policy.jitter_s
        )
        self._cap_s = policy.max_retry_after_s
        self._server_delay = server_delay

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        delay = self._server_delay(exc) if exc is not None and self._server_delay is not None else None
        if delay is not None:
            return min(max(delay, 0.0), self._cap_s)
        return float(self._backoff(retry_state))


def retrying(
    policy: RetryPolicy,
    *,
    retry: Callable[[BaseException], bool],
    event: str,
    context: Mapping[str, object] | None = None,
    describe: Callable[[BaseException], Mapping[str, object]] = _error_fields,
    server_delay: Callable[[BaseException], float | None] | None = None,
    sleep: Sleep = anyio.sleep,
) -> tenacity.AsyncRetrying:
    """A fresh ``AsyncRetrying`` for one call under ``policy``; the last error is re-raised.

    Args:
        policy: attempts and back-off.
        retry: whether an error may be retried (the boundary's own, pure predicate).
        event: the log event written before each wait (a warning).
        context: fields for that log line; never arguments, tokens or ids of leases.
        describe: fields about the error for that log line; its message by default, which the
            boundary must have built without secrets.
        server_delay: the delay the server named for an error (Retry-After), if any; it
            replaces the back-off, capped at ``policy.max_retry_after_s``.
        sleep: how to wait; tests pass one that records and returns at once.
    """
    fields = dict(context or {})

    def log_retry(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        about = describe(exc) if exc is not None else {}
        progress: dict[str, object] = {"attempt": state.attempt_number, "sleep_s": round(state.upcoming_sleep, 3)}
        if policy.attempts is not None:
            progress["attempts"] = policy.attempts
        _log.warning(event, **{**fields, **progress, **about})

    stop: tenacity.stop.stop_base = (
        tenacity.stop_never if policy.attempts is None else tenacity.stop_after_attempt(policy.attempts)
    )
    if policy.give_up_after_s is not None:
        stop = stop | tenacity.stop_after_delay(policy.give_up_after_s)
    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=_Wait(policy, server_delay),
        retry=tenacity.retry_if_exception(retry),
        before_sleep=log_retry,
        reraise=True,
    )


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now_s)
