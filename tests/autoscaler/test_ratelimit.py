"""Token buckets under a clock moved by hand: nothing here really waits."""

from __future__ import annotations

import anyio
import pytest

from autoscaler.ratelimit import KeyedRateLimiter, Limit, TokenBucket
from tests.autoscaler.conftest import FakeClock
from tests.fakes.sleep import RecordingSleep

pytestmark = pytest.mark.anyio

FLY = Limit(rate_per_s=1, burst=3)


def bucket(clock: FakeClock, limit: Limit = FLY) -> TokenBucket:
    return TokenBucket(limit, clock=clock, sleep=clock.sleep)


async def test_a_burst_passes_then_calls_are_paced_at_the_rate() -> None:
    clock = FakeClock()
    limiter = bucket(clock)

    waits = [await limiter.acquire() for _ in range(6)]

    assert waits == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert clock.now == 1003.0


async def test_an_idle_bucket_refills_up_to_its_burst_only() -> None:
    clock = FakeClock()
    limiter = bucket(clock)
    for _ in range(3):
        await limiter.acquire()

    clock.now += 100  # a long idle spell earns no more than the burst

    assert [await limiter.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 1.0]


async def test_concurrent_callers_queue_in_arrival_order(sleeps: RecordingSleep) -> None:
    clock = FakeClock()  # frozen: the sleeps below only record, so all four arrive at once
    limiter = TokenBucket(Limit(rate_per_s=2, burst=1), clock=clock, sleep=sleeps)
    waited: dict[int, float] = {}

    async def call(n: int) -> None:
        waited[n] = await limiter.acquire()

    async with anyio.create_task_group() as tg:
        for n in range(4):
            tg.start_soon(call, n)

    # No lock, no loop: each caller reserved the next slot, half a second after the previous one.
    assert sorted(waited.values()) == [0.0, 0.5, 1.0, 1.5]
    assert sorted(sleeps.calls) == [0.5, 1.0, 1.5]


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    clock = FakeClock()
    limiter = TokenBucket(Limit(rate_per_s=1, burst=1), clock=clock, sleep=anyio.sleep)
    await limiter.acquire()

    with anyio.move_on_after(0.01):
        await limiter.acquire()  # would wait ~1 s of the fake clock's time, really

    assert limiter.reserve() == pytest.approx(1.0)  # one debt, not two


async def test_pause_holds_every_caller_for_the_servers_delay() -> None:
    clock = FakeClock()
    limiter = bucket(clock)

    limiter.pause(5.0)

    assert await limiter.acquire() == pytest.approx(6.0)  # 5 s held, then one token at 1/s


async def test_keys_are_separate_buckets_with_limits_per_action() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(FLY, {"get": Limit(rate_per_s=5, burst=10)}, clock=clock, sleep=clock.sleep)

    for _ in range(3):
        await limiter.acquire("stop", "machine-a")
    assert await limiter.acquire("stop", "machine-b") == 0.0  # machine-scoped: another bucket
    assert await limiter.acquire("stop", "machine-a") == 1.0
    assert [await limiter.acquire("get", "machine-a") for _ in range(10)] == [0.0] * 10
    assert await limiter.acquire("get", "machine-a") == pytest.approx(0.2)


async def test_idle_buckets_are_forgotten_once_there_are_many() -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(FLY, clock=clock, sleep=clock.sleep, prune_at=4)

    for n in range(4):
        await limiter.acquire("stop", f"machine-{n}")
    clock.now += 10  # all refilled: idle
    await limiter.acquire("stop", "machine-new")

    assert limiter.bucket_count == 1


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        Limit(rate_per_s=0, burst=1)
    with pytest.raises(ValueError, match="burst"):
        Limit(rate_per_s=1, burst=0)
