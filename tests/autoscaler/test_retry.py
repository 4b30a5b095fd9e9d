"""The retry policy: what it retries, how long it waits, and what it never repeats."""

from __future__ import annotations

import pytest

from autoscaler.errors import ProviderConfigError, ProviderError
from autoscaler.retry import call_with_retry, is_retryable
from contracts.retry import RetryPolicy
from tests.fakes.sleep import RecordingSleep

pytestmark = pytest.mark.anyio

POLICY = RetryPolicy(attempts=4, initial_s=0.5, max_s=8.0, jitter_s=0.5, max_retry_after_s=30.0)


def error(
    *, retryable: bool = False, ambiguous: bool = False, status: int | None = None, retry_after_s: float | None = None
) -> ProviderError:
    return ProviderError(
        "fly", "list", "boom", status=status, retryable=retryable, ambiguous=ambiguous, retry_after_s=retry_after_s
    )


class Flaky:
    """Fails with the given errors in order, then returns "ok"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (error(retryable=True), True),
        (error(retryable=False), False),
        (error(retryable=True, ambiguous=True), False),
        (error(retryable=False, ambiguous=True), False),
        (ProviderConfigError("FLY_APP", "missing"), False),
        (TimeoutError(), False),
        (ValueError("bug"), False),
    ],
)
def test_only_retryable_unambiguous_provider_errors_are_retried(exc: BaseException, expected: bool) -> None:
    assert is_retryable(exc) is expected


async def test_retryable_errors_are_retried_until_success(sleeps: RecordingSleep) -> None:
    call = Flaky(error(retryable=True, status=503), error(retryable=True, status=502))

    assert await call_with_retry(call, policy=POLICY, sleep=sleeps) == "ok"

    assert call.calls == 3
    assert len(sleeps.calls) == 2
    # Exponential from 0.5 s, plus at most 0.5 s of jitter.
    assert 0.5 <= sleeps.calls[0] <= 1.0
    assert 1.0 <= sleeps.calls[1] <= 1.5


async def test_attempts_run_out_and_the_last_error_surfaces(sleeps: RecordingSleep) -> None:
    errors = [error(retryable=True, status=500 + n) for n in range(5)]
    call = Flaky(*errors)

    with pytest.raises(ProviderError) as caught:
        await call_with_retry(call, policy=POLICY, sleep=sleeps)

    assert caught.value is errors[3]
    assert call.calls == 4
    assert all(wait <= POLICY.max_s for wait in sleeps.calls)


async def test_an_ambiguous_error_is_never_retried(sleeps: RecordingSleep) -> None:
    ambiguous = error(retryable=True, ambiguous=True, status=504)
    call = Flaky(ambiguous)

    with pytest.raises(ProviderError) as caught:
        await call_with_retry(call, policy=POLICY, sleep=sleeps)

    assert caught.value is ambiguous
    assert call.calls == 1
    assert sleeps.calls == []


async def test_a_non_provider_error_passes_straight_through(sleeps: RecordingSleep) -> None:
    call = Flaky(KeyError("bug"))

    with pytest.raises(KeyError):
        await call_with_retry(call, policy=POLICY, sleep=sleeps)

    assert call.calls == 1


async def test_the_servers_delay_replaces_the_backoff_and_is_capped(sleeps: RecordingSleep) -> None:
    call = Flaky(
        error(retryable=True, status=429, retry_after_s=7.0),
        error(retryable=True, status=429, retry_after_s=600.0),
        error(retryable=True, status=429, retry_after_s=-3.0),
    )

    assert await call_with_retry(call, policy=POLICY, sleep=sleeps) == "ok"

    assert sleeps.calls == [7.0, 30.0, 0.0]


async def test_one_attempt_means_no_retry(sleeps: RecordingSleep) -> None:
    call = Flaky(error(retryable=True))

    with pytest.raises(ProviderError):
        await call_with_retry(call, policy=RetryPolicy(attempts=1), sleep=sleeps)

    assert call.calls == 1
