"""Fixtures for provider tests: loopback fakes, a sleep that only records, a clock moved by hand."""

from __future__ import annotations

from collections.abc import Iterator

import anyio.lowlevel
import pytest

from autoscaler.ratelimit import KeyedRateLimiter, Limit
from tests.fakes import FakeDigitalOceanApi, FakeFlyApi
from tests.fakes.sleep import RecordingSleep

# Distinctive values, so a leak into any error text is easy to spot.
FLY_TOKEN = "fm2_flytokencanary0123456789abcdef"
DO_TOKEN = "dop_v1_dotokencanary0123456789abcdef"
SECRET_VALUE = "store-secret-canary-42"


class FakeClock:
    """Monotonic seconds that only move when a sleep moves them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def _no_wait(seconds: float) -> None:
    await anyio.lowlevel.checkpoint()


def unlimited() -> KeyedRateLimiter:
    """A limiter that never really waits (not even when a 429 pauses it), so the recorded sleeps
    are the retry policy's alone."""
    return KeyedRateLimiter(Limit(rate_per_s=1_000_000, burst=1_000_000), sleep=_no_wait)


def texts_of(exc: BaseException) -> list[str]:
    """Every text an error carries, down its cause chain: where a leaked secret would show."""
    found: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found += [str(current), repr(current), *(str(arg) for arg in current.args)]
        current = current.__cause__ or current.__context__
    return found


def assert_no_secrets(exc: BaseException, *secrets: str) -> None:
    for text in texts_of(exc):
        for secret in secrets:
            assert secret not in text, f"secret leaked into error text: {text!r}"


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def fly_api() -> Iterator[FakeFlyApi]:
    with FakeFlyApi(token=FLY_TOKEN) as api:
        yield api


@pytest.fixture
def do_api() -> Iterator[FakeDigitalOceanApi]:
    with FakeDigitalOceanApi(token=DO_TOKEN) as api:
        yield api
