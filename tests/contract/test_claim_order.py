"""The claim's choice among due heads of equal priority: whoever has been claimable longest.

A queued head is claimable from its ``scheduledFor`` (for a retry, when its backoff ends); a head
whose lease expired, from that expiry. So a retry and an expired lease both come back at the
moment they came back, and the sweep, which turns an expired lease into a queued head, moves
nobody's place.
"""

from __future__ import annotations

import pytest

from tests.contract.conftest import LEASE_TTL_MS, Harness
from tests.contract.helpers import claim_text, fail_of, register, request

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("swept", [False, True], ids=["claimed-directly", "after-a-sweep"])
async def test_retries_and_expired_leases_are_ordered_by_when_they_came_back(harness: Harness, swept: bool) -> None:
    store = harness.store
    await register(store)
    start = await store.now_ms()
    await store.enqueue(request("retried", "retried"))
    job = await store.worker_claim("w1")
    assert job is not None
    retry = await store.worker_fail(fail_of(job))
    assert retry.next_scheduled_for is not None and retry.next_scheduled_for < start + 30_000
    await store.enqueue(request("expired", "expired"))
    assert await store.worker_claim("w1") is not None  # its worker dies; the lease runs out at start + TTL
    await store.enqueue(request("fresh", "fresh"))
    await store.enqueue(request("scheduled", "scheduled", scheduled_for=start + 30_000))
    await harness.advance(LEASE_TTL_MS)
    if swept:
        assert (await store.release_expired()).released == 1
    order = [await claim_text(store) for _ in range(5)]
    assert order == ["fresh", "retried", "scheduled", "expired", None]
