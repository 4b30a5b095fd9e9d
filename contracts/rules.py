"""The queue's rules as pure functions of their inputs and an injected ``now``.

Every store binding (SQLite here, the Convex module in TypeScript) applies exactly these
rules; keeping them free of I/O lets tests check them directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

DEFAULT_LEASE_TTL_MS = 60_000
MIN_LEASE_TTL_MS = 1_000
MAX_LEASE_TTL_MS = 24 * 3_600_000


def check_lease_ttl_ms(value: int) -> int:
    """The store's lease length, in bounds: long enough to heartbeat, short enough to recover."""
    if not MIN_LEASE_TTL_MS <= value <= MAX_LEASE_TTL_MS:
        raise ValueError(
            f"FACTORY_LEASE_TTL_MS: {value!r} is not a whole number of milliseconds between "
            f"{MIN_LEASE_TTL_MS} and {MAX_LEASE_TTL_MS}; the default is {DEFAULT_LEASE_TTL_MS}"
        )
    return value


@dataclass(frozen=True, slots=True)
class QueuePolicy:
    """How failed deliveries back off. The lease length is not here: the store keeps it."""

    backoff_base_ms: int = 1_000
    backoff_factor: float = 2.0
    backoff_cap_ms: int = 120_000
    jitter_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_ratio <= 1:
            raise ValueError("jitter_ratio: must be between 0 and 1")


class RandomSource(Protocol):
    def random(self) -> float: ...


def lease_expiry(now: int, lease_ttl_ms: int) -> int:
    return now + lease_ttl_ms


def lease_remaining_ms(lease_expires_at: int, store_now: int | None, local_now_ms: int) -> int:
    """What is left of a lease when the store answered: by the store's own clock when the answer
    carries it (no trust in this machine's clock), else by ours (upstream sends no clock)."""
    return max(0, lease_expires_at - (store_now if store_now is not None else local_now_ms))


def heartbeat_interval_ms(lease_remaining_ms: int) -> int:
    """Three heartbeats fit in what is left of a lease, so one lost heartbeat never costs it."""
    return max(1, lease_remaining_ms // 3)


# A worker's recorded heartbeat is rewritten only once it is this old. Liveness is judged in tens
# of seconds, so a busy worker's row is written about once a second instead of on every call.
HEARTBEAT_REFRESH_MS = 1_000


def heartbeat_due(heartbeat_at: int, now: int) -> bool:
    """Whether a call from a worker should rewrite its recorded heartbeat."""
    return now - heartbeat_at >= HEARTBEAT_REFRESH_MS


# A conversation's memory is its agent's state on the machine of the worker pinned to it. While
# that worker is active and was heard from within this long, it alone claims the conversation: an
# unpinned worker would answer without the memory. An idle worker polls every second; a starting
# one registers (after its restore) before its gateway is ready, 6-17 s here. A holder silent for
# longer (frozen in a suspend, in an outage, dead) gives the conversation to anyone, so a
# conversation never waits on a worker that cannot take it.
HOLD_MS = 30_000


def holds(status: str, heartbeat_at: int, now: int) -> bool:
    """Whether a worker pinned to a conversation keeps it from unpinned claims."""
    return status == "active" and now - heartbeat_at < HOLD_MS


# A worker that said it exited stays in the demand snapshot, as stopped, for this long: the
# reconciler parks or destroys its machine at once, where before it waited for the machine to be
# listed stopped (a powered-off droplet still bills) and could not tell a drained machine, which
# the warm pool may keep, from one whose worker never came up. Longer than any tick interval.
EXITED_VISIBLE_MS = 600_000


def exit_visible(status: str, status_since: int | None, now: int) -> bool:
    """Whether a worker belongs in the demand snapshot: not stopped, or stopped recently."""
    return status != "stopped" or (status_since is not None and now - status_since < EXITED_VISIBLE_MS)


def stop_reason(status: str, reason: str | None) -> str | None:
    """Why a worker must stop (None: it may carry on): any status but active, with its reason."""
    if status == "active":
        return None
    return f"status {status}" + (f": {reason}" if reason else "")


def stale_after_ms(lease_ttl_ms: int) -> int:
    """How long an active worker may go without a heartbeat before the views call it stale (gone
    without saying so: killed, or its machine lost). A live worker heartbeats at least every idle
    poll, and three times per lease while busy."""
    return max(2 * lease_ttl_ms, 60_000)


def out_of_attempts(attempts: int, max_attempts: int) -> bool:
    """Attempts are counted at claim: the delivery numbered ``max_attempts`` is the last one."""
    return attempts >= max_attempts


def attempts_after_release(attempts: int) -> int:
    """A released message was not at fault: the attempt its claim counted is given back, so an
    outage of any length never brings a message nearer its dead letter."""
    return max(0, attempts - 1)


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
