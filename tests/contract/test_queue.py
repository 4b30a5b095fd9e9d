"""Queue semantics every store must honour (ARCHITECTURE §2), one test per rule."""

from __future__ import annotations

import pytest

from contracts.errors import AgentUnavailable, ConversationConflict
from contracts.models import AgentProfile, ClaimedJob, FailRequest, LeaseRef
from tests.contract.conftest import LEASE_TTL_MS, Harness
from tests.contract.helpers import claim_text, fail_of, lease_of, register, release_of, request

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- enqueue


async def test_enqueue_returns_an_id_and_counts_a_ready_conversation(harness: Harness) -> None:
    store = harness.store
    message_id = await store.enqueue(request("telegram:1"))
    assert message_id
    stats = await store.queue_stats()
    assert (stats.queued, stats.ready_conversations, stats.inflight_conversations) == (1, 1, 0)


async def test_same_external_id_in_a_conversation_is_enqueued_once(harness: Harness) -> None:
    store = harness.store
    first = await store.enqueue(request("c", "a", external_id="tg-7"))
    second = await store.enqueue(request("c", "a again", external_id="tg-7"))
    other_conversation = await store.enqueue(request("d", "a", external_id="tg-7"))
    assert first == second
    assert other_conversation != first
    assert (await store.queue_stats()).queued == 2


async def test_enqueue_to_an_unknown_agent_is_a_clear_error(harness: Harness) -> None:
    with pytest.raises(AgentUnavailable, match="nobody"):
        await harness.store.enqueue(request(agent_key="nobody"))
    assert (await harness.store.queue_stats()).queued == 0


async def test_enqueue_to_a_disabled_agent_is_a_clear_error(harness: Harness) -> None:
    store = harness.store
    await store.upsert_agent_profile(AgentProfile(agent_key="sleepy", enabled=False))
    with pytest.raises(AgentUnavailable, match="disabled"):
        await store.enqueue(request(agent_key="sleepy"))


async def test_a_conversation_belongs_to_one_agent(harness: Harness) -> None:
    store = harness.store
    await store.upsert_agent_profile(AgentProfile(agent_key="other"))
    await store.enqueue(request("c", agent_key="default"))
    with pytest.raises(ConversationConflict):
        await store.enqueue(request("c", agent_key="other"))
    assert (await store.queue_stats()).queued == 1


# --------------------------------------------------------------------------- FIFO and claim choice


async def test_a_conversation_is_delivered_in_enqueue_order(harness: Harness) -> None:
    store = harness.store
    await register(store)
    for text in ("one", "two", "three"):
        await store.enqueue(request("c", text))
    assert [await claim_text(store) for _ in range(4)] == ["one", "two", "three", None]


async def test_next_message_waits_while_the_head_is_processing(harness: Harness) -> None:
    store = harness.store
    await register(store, "w1")
    await register(store, "w2")
    await store.enqueue(request("c", "one"))
    await store.enqueue(request("c", "two"))
    job = await store.worker_claim("w1")
    assert job is not None
    assert await store.worker_claim("w2") is None
    assert (await store.worker_complete(lease_of(job, "w1"))).ok
    nxt = await store.worker_claim("w2")
    assert nxt is not None and nxt.payload.message_text == "two"


async def test_claim_prefers_priority_then_schedule_then_enqueue_order(harness: Harness) -> None:
    store = harness.store
    await register(store)
    now = await store.now_ms()
    await store.enqueue(request("low", "low", priority=10))
    await store.enqueue(request("later", "mid-later", scheduled_for=now - 1_000))
    await store.enqueue(request("earlier", "mid-earlier", scheduled_for=now - 5_000))
    await store.enqueue(request("mid-2", "mid-tie"))
    await store.enqueue(request("high", "high", priority=90))
    order = [await claim_text(store) for _ in range(5)]
    assert order == ["high", "mid-earlier", "mid-later", "mid-tie", "low"]


async def test_a_message_scheduled_for_later_is_not_claimed_early(harness: Harness) -> None:
    store = harness.store
    await register(store)
    now = await store.now_ms()
    await store.enqueue(request("c", "later", scheduled_for=now + 10_000))
    assert await store.worker_claim("w1") is None
    stats = await store.queue_stats()
    assert (stats.ready_conversations, stats.scheduled_conversations) == (0, 1)
    await harness.advance(10_000)
    assert await claim_text(store) == "later"


async def test_a_scheduled_message_does_not_hold_up_one_sent_now(harness: Harness) -> None:
    store = harness.store
    await register(store)
    now = await store.now_ms()
    await store.enqueue(request("c", "tomorrow", scheduled_for=now + 86_400_000))
    await store.enqueue(request("c", "now"))
    assert await claim_text(store) == "now"
    assert await claim_text(store) is None


async def test_no_scan_window_a_due_head_is_found_behind_many_busy_ones(harness: Harness) -> None:
    store = harness.store
    await register(store, "w-busy")
    await register(store, "w1")
    # Forty higher-priority conversations, all in flight, ahead of one due low-priority head.
    for i in range(40):
        await store.enqueue(request(f"busy-{i}", "x", priority=100))
        assert await store.worker_claim("w-busy") is not None
    await store.enqueue(request("starving", "finally", priority=0))
    job = await store.worker_claim("w1")
    assert job is not None and job.payload.message_text == "finally"


async def test_a_pinned_claim_only_takes_its_conversation(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("a", "for a", priority=90))
    await store.enqueue(request("b", "for b"))
    job = await store.worker_claim("w1", conversation_id="b")
    assert job is not None and job.conversation_id == "b"
    assert await store.worker_claim("w1", conversation_id="b") is None


# --------------------------------------------------------------------------- leases


async def test_claim_returns_a_fresh_lease_with_the_ttl(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    now = await store.now_ms()
    job = await store.worker_claim("w1")
    assert job is not None
    assert job.attempt == 1
    assert job.lease_expires_at == now + LEASE_TTL_MS
    assert job.now == now  # the store's clock rides along: the worker paces itself by it
    assert len(job.lease_id) >= 16
    assert (await store.queue_stats()).lease_ttl_ms == LEASE_TTL_MS


async def test_heartbeat_extends_a_live_lease(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    await harness.advance(LEASE_TTL_MS - 1_000)
    now = await store.now_ms()
    beat = await store.worker_heartbeat(lease_of(job))
    assert (beat.ok, beat.refused, beat.lease_expires_at, beat.now) == (True, None, now + LEASE_TTL_MS, now)
    await harness.advance(LEASE_TTL_MS - 1_000)
    assert (await store.worker_complete(lease_of(job))).ok


async def test_an_expired_lease_is_dead_even_before_a_sweep(harness: Harness) -> None:
    store = harness.store
    await register(store, "w1")
    await register(store, "w2")
    await store.enqueue(request("c", "one"))
    job = await store.worker_claim("w1")
    assert job is not None
    await harness.advance(LEASE_TTL_MS)
    beat = await store.worker_heartbeat(lease_of(job))
    assert (beat.ok, beat.refused) == (False, "lease_expired")
    done = await store.worker_complete(lease_of(job))
    assert (done.ok, done.refused) == (False, "lease_expired")
    taken = await store.worker_claim("w2")
    assert taken is not None
    assert taken.message_id == job.message_id
    assert taken.lease_id != job.lease_id
    assert taken.attempt == 2


async def _taken_over(harness: Harness) -> tuple[ClaimedJob, ClaimedJob]:
    """w1's lease on a message runs out and w2 claims it: (w1's job, w2's job)."""
    store = harness.store
    await register(store, "w1")
    await register(store, "w2")
    await store.enqueue(request("c", "one"))
    old = await store.worker_claim("w1")
    assert old is not None
    await harness.advance(LEASE_TTL_MS)
    new = await store.worker_claim("w2")
    assert new is not None and new.attempt == 2
    return old, new


async def test_a_stale_lease_changes_nothing(harness: Harness) -> None:
    store = harness.store
    old, new = await _taken_over(harness)
    refused = await store.worker_complete(lease_of(old, "w1"))
    assert (refused.ok, refused.refused) == (False, "lease_lost")
    result = await store.worker_fail(fail_of(old, worker_id="w1"))
    assert (result.requeued, result.dead_lettered, result.refused) == (False, False, "lease_lost")
    record = await store.get_message(new.message_id)
    assert record is not None and record.status == "processing" and record.claimed_by == "w2"
    assert (await store.worker_complete(lease_of(new, "w2"))).ok


async def test_a_lease_is_fenced_by_worker_too(harness: Harness) -> None:
    store = harness.store
    await register(store, "w1")
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    assert (await store.worker_complete(lease_of(job, "intruder"))).refused == "lease_lost"
    assert (await store.worker_complete(lease_of(job, "w1"))).ok


async def test_a_retried_complete_reports_the_first_outcome(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    assert (await store.worker_complete(lease_of(job))).ok
    assert (await store.worker_complete(lease_of(job))).ok
    assert (await store.queue_stats()).done == 1


async def test_an_unknown_lease_or_message_is_refused_with_the_reason(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    forged = LeaseRef(worker_id="w1", message_id=job.message_id, lease_id="not-the-lease")
    assert (await store.worker_heartbeat(forged)).refused == "lease_lost"
    assert (await store.worker_complete(forged)).refused == "lease_lost"
    unknown = LeaseRef(worker_id="w1", message_id="no-such-message", lease_id=job.lease_id)
    assert (await store.worker_heartbeat(unknown)).refused == "unknown_message"
    assert (await store.worker_complete(unknown)).refused == "unknown_message"
    failed = await store.worker_fail(FailRequest(lease=unknown, error_message="x"))
    assert failed.refused == "unknown_message"


# --------------------------------------------------------------------------- failure, retry, dead letter


async def test_fail_requeues_at_the_head_with_exponential_backoff(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "flaky"))
    await store.enqueue(request("c", "after"))
    expected_base = [1_000, 2_000, 4_000, 8_000]
    for attempt, base in enumerate(expected_base, start=1):
        job = await store.worker_claim("w1")
        assert job is not None and job.payload.message_text == "flaky" and job.attempt == attempt
        now = await store.now_ms()
        result = await store.worker_fail(fail_of(job))
        assert result.requeued and not result.dead_lettered
        assert result.next_scheduled_for is not None
        delay = result.next_scheduled_for - now
        assert base <= delay <= base * 1.1 + 1
        # Waiting for a retry blocks the conversation: "after" must not overtake.
        assert await store.worker_claim("w1") is None
        stats = await store.queue_stats()
        assert stats.retrying_conversations == 1 and stats.ready_conversations == 0
        await harness.advance(delay)


async def test_backoff_is_capped(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "x", max_attempts=20))
    delay = 0
    for _ in range(12):
        job = await store.worker_claim("w1")
        assert job is not None
        now = await store.now_ms()
        result = await store.worker_fail(fail_of(job))
        assert result.next_scheduled_for is not None
        delay = result.next_scheduled_for - now
        assert delay <= 120_000
        await harness.advance(delay)
    assert delay == 120_000


async def test_out_of_attempts_goes_to_the_dead_letter_with_the_reason(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "poison", max_attempts=2))
    await store.enqueue(request("c", "next"))
    job = await store.worker_claim("w1")
    assert job is not None
    first = await store.worker_fail(fail_of(job, "gateway 503"))
    assert first.requeued
    assert first.next_scheduled_for is not None
    await harness.advance(first.next_scheduled_for - await store.now_ms())
    job = await store.worker_claim("w1")
    assert job is not None and job.attempt == 2
    second = await store.worker_fail(fail_of(job, "gateway 503 again"))
    assert (second.requeued, second.dead_lettered, second.next_scheduled_for) == (False, True, None)
    [dead] = await store.list_dead_letters()
    assert dead.message_id == job.message_id
    assert dead.attempts == 2 and "gateway 503 again" in dead.last_error and "attempts" in dead.last_error
    # A dead letter unblocks its conversation.
    assert await claim_text(store) == "next"


async def test_a_non_retryable_failure_dead_letters_at_once(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    result = await store.worker_fail(fail_of(job, "400 bad request", retryable=False))
    assert result.dead_lettered and not result.requeued
    [dead] = await store.list_dead_letters()
    assert "not retryable" in dead.last_error and "400 bad request" in dead.last_error


async def test_a_retried_fail_reports_the_first_outcome(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    job = await store.worker_claim("w1")
    assert job is not None
    first = await store.worker_fail(fail_of(job))
    again = await store.worker_fail(fail_of(job))
    assert first == again
    record = await store.get_message(job.message_id)
    assert record is not None and record.attempts == 1


async def test_a_message_that_crashes_every_worker_ends_dead_lettered(harness: Harness) -> None:
    """Attempts are counted at claim, so lease expiry alone reaches the dead letter."""
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "kills workers", max_attempts=3))
    await store.enqueue(request("c", "survivor"))
    for attempt in (1, 2, 3):
        job = await store.worker_claim("w1")
        assert job is not None and job.attempt == attempt and job.payload.message_text == "kills workers"
        await harness.advance(LEASE_TTL_MS)  # the worker died; nobody heartbeats
    assert await claim_text(store) == "survivor"
    [dead] = await store.list_dead_letters()
    assert "lease expired" in dead.last_error and dead.attempts == 3


# --------------------------------------------------------------------------- release (not the message's fault)


async def test_release_gives_the_message_back_without_spending_an_attempt(harness: Harness) -> None:
    store = harness.store
    await register(store)
    first = await store.enqueue(request("c", "held up", max_attempts=2))
    await store.enqueue(request("c", "behind it"))
    for _ in range(3):  # more releases than attempts: none of them counts
        job = await store.worker_claim("w1")
        assert job is not None and job.message_id == first and job.attempt == 1
        released = await store.worker_release(release_of(job, "gateway unreachable"))
        assert (released.ok, released.refused) == (True, None)
        record = await store.get_message(first)
        assert record is not None and (record.status, record.attempts) == ("queued", 0)
        assert record.last_error == "released: gateway unreachable"
        stats = await store.queue_stats()
        # Due at once, at the head of its conversation: not a retry waiting out a backoff.
        assert (stats.ready_conversations, stats.retrying_conversations, stats.processing) == (1, 0, 0)
    assert [await claim_text(store) for _ in range(3)] == ["held up", "behind it", None]


async def test_a_release_after_the_lease_ran_out_still_lands_if_nobody_took_over(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "x", max_attempts=1))
    job = await store.worker_claim("w1")
    assert job is not None
    await harness.advance(LEASE_TTL_MS * 2)  # the store was out of reach; the lease ran out meanwhile
    assert (await store.worker_release(release_of(job))).ok
    again = await store.worker_claim("w1")
    # On its only attempt, and not dead-lettered by the expiry: the release gave the attempt back.
    assert again is not None and again.message_id == job.message_id and again.attempt == 1


async def test_a_release_is_fenced_and_a_replay_reports_the_first_outcome(harness: Harness) -> None:
    store = harness.store
    _, new = await _taken_over(harness)
    intruder = await store.worker_release(release_of(new, worker_id="w1"))
    assert (intruder.ok, intruder.refused) == (False, "lease_lost")
    record = await store.get_message(new.message_id)
    assert record is not None and (record.status, record.attempts, record.claimed_by) == ("processing", 2, "w2")
    assert (await store.worker_release(release_of(new, worker_id="w2"))).ok
    assert (await store.worker_release(release_of(new, worker_id="w2"))).ok
    record = await store.get_message(new.message_id)
    assert record is not None and (record.status, record.attempts) == ("queued", 1)
    # Released means no longer ours: complete and heartbeat with that lease are refused.
    assert (await store.worker_complete(lease_of(new, "w2"))).refused == "lease_lost"


async def test_a_lease_taken_over_during_a_store_outage_gets_its_attempt_back_once(harness: Harness) -> None:
    """The worker could not reach the store while its lease ran out, and another worker took the
    message over: giving it back late is refused (it is not this worker's any more), but the attempt
    its claim counted was not the message's fault, so it is returned, once."""
    store = harness.store
    old, new = await _taken_over(harness)
    for _ in range(2):  # the second is a replay: nothing more is given back
        late = await store.worker_release(release_of(old, worker_id="w1"))
        assert (late.ok, late.refused) == (False, "lease_lost")
        record = await store.get_message(new.message_id)
        assert record is not None and (record.status, record.attempts, record.claimed_by) == ("processing", 1, "w2")
    assert (await store.worker_complete(lease_of(new, "w2"))).ok


async def test_a_lease_swept_during_a_store_outage_gets_its_attempt_back(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "x", max_attempts=2))
    job = await store.worker_claim("w1")
    assert job is not None
    await harness.advance(LEASE_TTL_MS)
    assert (await store.release_expired()).released == 1
    late = await store.worker_release(release_of(job))
    assert (late.ok, late.refused) == (False, "lease_lost")
    record = await store.get_message(job.message_id)
    assert record is not None and (record.status, record.attempts) == ("queued", 0)
    stats = await store.queue_stats()
    assert (stats.ready_conversations, stats.retrying_conversations) == (1, 0)


# --------------------------------------------------------------------------- sweep and redrive


async def test_sweep_returns_expired_leases_or_dead_letters_them(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("a", "retry me", max_attempts=5))
    await store.enqueue(request("b", "last chance", max_attempts=1))
    assert await store.worker_claim("w1") is not None
    assert await store.worker_claim("w1") is not None
    assert (await store.release_expired()).released == 0
    await harness.advance(LEASE_TTL_MS)
    result = await store.release_expired()
    assert (result.released, result.dead_lettered) == (1, 1)
    stats = await store.queue_stats()
    assert (stats.processing, stats.queued, stats.dead_letters, stats.ready_conversations) == (0, 1, 1, 1)
    assert await claim_text(store) == "retry me"


async def test_redrive_one_dead_letter(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "x", max_attempts=1))
    job = await store.worker_claim("w1")
    assert job is not None
    await store.worker_fail(fail_of(job))
    result = await store.redrive(job.message_id)
    assert result.redriven == [job.message_id]
    assert await store.list_dead_letters() == []
    again = await store.worker_claim("w1")
    assert again is not None and again.message_id == job.message_id and again.attempt == 1


async def test_redrive_all_and_unknown(harness: Harness) -> None:
    store = harness.store
    await register(store)
    for conv in ("a", "b", "c"):
        await store.enqueue(request(conv, conv, max_attempts=1))
        job = await store.worker_claim("w1")
        assert job is not None
        await store.worker_fail(fail_of(job, retryable=False))
    assert (await store.redrive("no-such-id")).redriven == []
    assert len((await store.redrive()).redriven) == 3
    assert (await store.queue_stats()).ready_conversations == 3


async def test_redrive_never_puts_two_messages_of_a_conversation_in_flight(harness: Harness) -> None:
    store = harness.store
    await register(store, "w1")
    await register(store, "w2")
    await store.enqueue(request("c", "first", max_attempts=1))
    await store.enqueue(request("c", "second"))
    first = await store.worker_claim("w1")
    assert first is not None
    await store.worker_fail(fail_of(first, worker_id="w1"))
    second = await store.worker_claim("w1")
    assert second is not None and second.payload.message_text == "second"
    await store.redrive(first.message_id)
    assert await store.worker_claim("w2") is None
    assert (await store.worker_complete(lease_of(second, "w1"))).ok
    again = await store.worker_claim("w2")
    assert again is not None and again.message_id == first.message_id


async def test_get_message_shows_its_state(harness: Harness) -> None:
    store = harness.store
    await register(store)
    message_id = await store.enqueue(request("c", "look"))
    record = await store.get_message(message_id)
    assert record is not None and record.status == "queued" and record.payload.message_text == "look"
    assert await store.get_message("missing") is None
