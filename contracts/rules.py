"""The queue's rules as pure functions of their inputs and an injected ``now``.

Every store binding (SQLite here, the Convex module in TypeScript) applies exactly these
rules; keeping them free of I/O lets tests check them directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    lease_ttl_ms: int = 60_000
    backoff_base_ms: int = 1_000
    backoff_factor: float = 2.0
    backoff_cap_ms: int = 120_000
    jitter_ratio: float = 0.1
    # How long after its last heartbeat a worker counts as gone.
    worker_stale_ms: int = 5 * 60_000

    def __post_init__(self) -> None:
        if self.lease_ttl_ms < 1_000:
            raise ValueError("lease_ttl_ms: must be at least 1000 (one second)")
        if not 0 <= self.jitter_ratio <= 1:
            raise ValueError("jitter_ratio: must be between 0 and 1")


class RandomSource(Protocol):
    def random(self) -> float: ...


def lease_expiry(now: int, policy: QueuePolicy) -> int:
    return now + policy.lease_ttl_ms


def heartbeat_interval_ms(policy: QueuePolicy) -> int:
    """Three heartbeats fit in one lease, so one lost heartbeat never costs the lease."""
    return max(1, policy.lease_ttl_ms // 3)


def out_of_attempts(attempts: int, max_attempts: int) -> bool:
    """Attempts are counted at claim: the delivery numbered ``max_attempts`` is the last one."""
    return attempts >= max_attempts


def backoff_ms(attempt: int, policy: QueuePolicy, rng: RandomSource) -> int:
    """Delay before delivery ``attempt + 1``: exponential from the base, capped, plus jitter.

    Jitter only ever adds (up to ``jitter_ratio`` of the delay) and the cap holds after it,
    so the first retry is never sooner than the base delay.
    """
    exponent = max(0, attempt - 1)
    bounded = min(policy.backoff_cap_ms, policy.backoff_base_ms * policy.backoff_factor**exponent)
    jitter = bounded * policy.jitter_ratio * rng.random()
    return int(min(policy.backoff_cap_ms, bounded + jitter))


def system_random() -> random.Random:
    """The default jitter source; tests inject a seeded ``random.Random`` instead."""
    return random.SystemRandom()
