"""Client-side rate limits: an async token bucket per key, with time injected.

Platform limits are published as "N requests per second with a burst of B" (Fly Machines: 1/s per
action, burst 3) or "N per window" (DigitalOcean: 250 per minute and 5,000 per hour per token).
Staying under them is cheaper than meeting a 429, which costs a round trip and a back-off.

A bucket holds up to ``burst`` tokens and refills at ``rate_per_s``. ``acquire`` *reserves* a
token: the balance may go negative, and the caller sleeps until its reservation matures. Because
the reservation happens before the only ``await``, concurrent callers queue up in arrival order
without a lock, and a caller never loops. A caller cancelled while waiting hands its token back.

Tests inject ``clock`` and ``sleep`` so nothing real waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import anyio
from pydantic import BaseModel, ConfigDict, Field

from contracts.retry import Sleep

__all__ = ["Clock", "KeyedRateLimiter", "Limit", "TokenBucket"]

Clock = Callable[[], float]
"""Monotonic seconds."""


class Limit(BaseModel):
    """A rate: ``rate_per_s`` sustained, up to ``burst`` at once.

    In any window of T seconds a bucket lets through at most ``burst + rate_per_s * T`` calls;
    size sliding-window limits ("250 per minute") with that bound in mind.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    rate_per_s: float = Field(gt=0)
    burst: int = Field(ge=1)


class TokenBucket:
    """One token bucket. Not thread-safe: use it from one event loop."""

    def __init__(self, limit: Limit, *, clock: Clock = time.monotonic, sleep: Sleep = anyio.sleep) -> None:
        self.limit = limit
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(limit.burst)
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._stamp)
        self._stamp = now
        self._tokens = min(float(self.limit.burst), self._tokens + elapsed * self.limit.rate_per_s)

    def reserve(self) -> float:
        """Take one token now; return how many seconds the caller must wait before using it."""
        self._refill()
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.limit.rate_per_s

    def refund(self) -> None:
        """Give back a reservation that was never used (the caller was cancelled)."""
        self._refill()
        self._tokens = min(float(self.limit.burst), self._tokens + 1.0)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds``: the server said so (429 with Retry-After)."""
        if seconds <= 0:
            return
        self._refill()
        # A zero balance plus a debt worth ``seconds`` of refill: the next token matures after it.
        self._tokens = min(self._tokens, 0.0) - seconds * self.limit.rate_per_s

    @property
    def idle(self) -> bool:
        """Full again: forgetting this bucket changes nothing."""
        self._refill()
        return self._tokens >= self.limit.burst

    async def acquire(self) -> float:
        """Wait for a token; return the seconds waited (0 when one was at hand)."""
        wait = self.reserve()
        if wait <= 0:
            return 0.0
        try:
            await self._sleep(wait)
        except BaseException:
            # Cancelled (or the injected sleep failed): the slot was not used, so free it.
            self.refund()
            raise
        return wait


class KeyedRateLimiter:
    """Token buckets created on demand per ``(action, scope)``.

    ``action`` picks the limit (``limits[action]``, else ``default``); ``scope`` separates buckets
    that the platform counts separately, such as one per machine id for Fly's machine-scoped
    actions. Idle buckets are forgotten once there are many, so per-machine keys do not pile up.
    """

    def __init__(
        self,
        default: Limit,
        limits: Mapping[str, Limit] | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
        prune_at: int = 1024,
    ) -> None:
        self._prune_at = prune_at
        self._default = default
        self._limits = dict(limits or {})
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def limit_for(self, action: str) -> Limit:
        return self._limits.get(action, self._default)

    def bucket(self, action: str, scope: str = "") -> TokenBucket:
        key = (action, scope)
        found = self._buckets.get(key)
        if found is None:
            if len(self._buckets) >= self._prune_at:
                self._prune()
            found = TokenBucket(self.limit_for(action), clock=self._clock, sleep=self._sleep)
            self._buckets[key] = found
        return found

    async def acquire(self, action: str, scope: str = "") -> float:
        """Wait for a token in the bucket of ``(action, scope)``; return the seconds waited."""
        return await self.bucket(action, scope).acquire()

    def pause(self, action: str, seconds: float, scope: str = "") -> None:
        self.bucket(action, scope).pause(seconds)

    @property
    def bucket_count(self) -> int:
        """How many buckets are held now (a property, not ``__len__``: an empty limiter is not falsy)."""
        return len(self._buckets)

    def _prune(self) -> None:
        for key in [key for key, bucket in self._buckets.items() if bucket.idle]:
            del self._buckets[key]
