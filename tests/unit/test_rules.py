"""The pure queue rules."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.rules import (
    QueuePolicy,
    backoff_ms,
    check_lease_ttl_ms,
    heartbeat_interval_ms,
    lease_remaining_ms,
    out_of_attempts,
)

POLICY = QueuePolicy()


class _Fixed:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


def test_backoff_doubles_from_one_second_without_jitter() -> None:
    assert [backoff_ms(n, POLICY, _Fixed(0.0)) for n in range(1, 10)] == [
        1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 120_000, 120_000,
    ]  # fmt: skip


def test_jitter_adds_at_most_ten_percent_and_never_passes_the_cap() -> None:
    assert backoff_ms(1, POLICY, _Fixed(0.999)) == 1_099
    assert backoff_ms(8, POLICY, _Fixed(0.999)) == 120_000


@given(attempt=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_backoff_stays_within_bounds(attempt: int, seed: int) -> None:
    delay = backoff_ms(attempt, POLICY, random.Random(seed))
    assert POLICY.backoff_base_ms <= delay <= POLICY.backoff_cap_ms


def test_attempts_are_counted_at_claim() -> None:
    assert not out_of_attempts(4, 5)
    assert out_of_attempts(5, 5)


def test_three_heartbeats_fit_in_a_lease() -> None:
    assert heartbeat_interval_ms(60_000) == 20_000


def test_what_is_left_of_a_lease_is_read_on_the_store_clock_when_it_says() -> None:
    assert lease_remaining_ms(lease_expires_at=61_000, store_now=1_000, local_now_ms=999_999) == 60_000
    # Without the store's clock (upstream), this machine's clock stands in.
    assert lease_remaining_ms(lease_expires_at=61_000, store_now=None, local_now_ms=31_000) == 30_000
    assert lease_remaining_ms(lease_expires_at=61_000, store_now=None, local_now_ms=99_000) == 0


def test_the_lease_ttl_must_be_usable() -> None:
    assert check_lease_ttl_ms(60_000) == 60_000
    with pytest.raises(ValueError, match="FACTORY_LEASE_TTL_MS"):
        check_lease_ttl_ms(10)
    with pytest.raises(ValueError, match="FACTORY_LEASE_TTL_MS"):
        check_lease_ttl_ms(10**12)
