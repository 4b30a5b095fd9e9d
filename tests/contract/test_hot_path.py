"""The hot path every store must offer: a claim that answers with the bundle and whether to stop,
and a complete that carries the history and claims the worker's next job (ARCHITECTURE §2)."""

from __future__ import annotations

import pytest

from contracts.models import ClaimedJob, HistoryMessage, NextClaim, SetWorkerStatusRequest
from tests.contract.conftest import LEASE_TTL_MS, Harness
from tests.contract.helpers import lease_of, register, request

pytestmark = pytest.mark.anyio

TURNS = [HistoryMessage(role="user", content="question"), HistoryMessage(role="assistant", content="answer")]


async def _claimed(harness: Harness, *messages: tuple[str, str]) -> ClaimedJob:
    """Register w1, enqueue (conversation, text) pairs, and claim the first job for w1."""
    await register(harness.store)
    for conversation, text in messages:
        await harness.store.enqueue(request(conversation, text))
    job = await harness.store.worker_claim("w1")
    assert job is not None
    return job


async def _drain(harness: Harness, worker_id: str = "w1") -> None:
    await harness.store.fleet_set_worker_status(
        SetWorkerStatusRequest(worker_id=worker_id, status="draining", reason="scale down")
    )


async def test_a_claim_answers_with_the_bundle_and_the_control_state(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("c", "hello"))
    now = await store.now_ms()
    answer = await store.worker_claim("w1", with_bundle=True)
    assert (answer.control.should_stop, answer.now) == (False, now)
    assert answer.job is not None and answer.job.payload.message_text == "hello"
    assert answer.job.lease_expires_at == now + LEASE_TTL_MS
    assert answer.bundle == await store.worker_hydration_bundle(answer.job.message_id)


async def test_an_idle_poll_is_one_claim_that_says_whether_to_stop(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await harness.advance(30_000)
    empty = await store.worker_claim("w1", with_bundle=True)
    assert (empty.job, empty.bundle, empty.control.should_stop) == (None, None, False)
    assert (await store.fleet_demand()).workers[0].heartbeat_age_ms == 0  # the poll was a heartbeat
    await store.enqueue(request())
    await _drain(harness)
    told = await store.worker_claim("w1", with_bundle=True)
    assert told.job is None and told.control.should_stop
    assert told.control.reason is not None and "draining" in told.control.reason
    assert (await store.queue_stats()).queued == 1


async def test_heartbeat_and_complete_answers_carry_the_control_state(harness: Harness) -> None:
    store = harness.store
    job = await _claimed(harness, ("conv-1", "hello"))
    assert (await store.worker_heartbeat(lease_of(job))).control == (await store.worker_control_state("w1"))
    await _drain(harness)
    beat = await store.worker_heartbeat(lease_of(job))
    # The job in flight may finish; the answer tells the worker to claim nothing more.
    assert beat.ok and beat.control is not None and beat.control.should_stop
    done = await store.worker_complete(lease_of(job))
    assert done.ok and done.control is not None and done.control.should_stop


async def test_complete_writes_the_history_once(harness: Harness) -> None:
    store = harness.store
    job = await _claimed(harness, ("c", "first"))
    done = await store.worker_complete(lease_of(job), history=TURNS)
    assert done.ok and done.appended is not None and (done.appended.updated, done.appended.message_count) == (True, 2)
    again = await store.worker_complete(lease_of(job), history=TURNS)  # a retried call whose first try landed
    assert (
        again.ok and again.appended is not None and (again.appended.updated, again.appended.message_count) == (False, 2)
    )
    conversation = await store.get_conversation("c")
    assert conversation is not None
    assert [(m.role, m.content) for m in conversation.history] == [("user", "question"), ("assistant", "answer")]


async def test_a_refused_complete_writes_no_history_and_claims_nothing(harness: Harness) -> None:
    store = harness.store
    await register(store, "w1")
    await register(store, "w2")
    await store.enqueue(request("c", "one"))
    await store.enqueue(request("d", "other"))
    stale = await store.worker_claim("w1")
    assert stale is not None
    await harness.advance(LEASE_TTL_MS)
    refused = await store.worker_complete(lease_of(stale), history=TURNS, claim_next=NextClaim())
    assert (refused.ok, refused.refused, refused.appended) == (False, "lease_expired", None)
    assert refused.next is not None and refused.next.job is None and not refused.next.control.should_stop
    conversation = await store.get_conversation("c")
    assert conversation is not None and conversation.history == []
    assert (await store.queue_stats()).processing == 1  # only the expired lease; nothing new was claimed


async def test_complete_claims_the_next_job_in_the_same_transaction(harness: Harness) -> None:
    store = harness.store
    job = await _claimed(harness, ("c", "first"), ("c", "second"))
    done = await store.worker_complete(lease_of(job), history=TURNS, claim_next=NextClaim())
    assert done.ok and done.next is not None and not done.next.control.should_stop
    nxt, bundle = done.next.job, done.next.bundle
    assert nxt is not None and nxt.payload.message_text == "second" and nxt.attempt == 1
    # The bundle was read after the history was written: the next turn sees the previous one.
    assert bundle is not None and bundle.message_id == nxt.message_id
    assert [m.content for m in bundle.history] == ["question", "answer"]
    demand = await store.fleet_demand()
    assert demand.workers[0].busy and demand.inflight_conversations == 1
    assert (await store.worker_complete(lease_of(nxt))).ok


async def test_a_busy_worker_needs_one_call_per_message(harness: Harness) -> None:
    store = harness.store
    await register(store)
    texts = [f"m{i}" for i in range(6)]
    for i, text in enumerate(texts):
        await store.enqueue(request(f"conv-{i % 3}", text))
    seen: list[str] = []
    job = (await store.worker_claim("w1", with_bundle=True)).job
    calls = 1
    while job is not None:
        seen.append(job.payload.message_text)
        done = await store.worker_complete(lease_of(job), history=TURNS, claim_next=NextClaim(with_bundle=False))
        calls += 1
        assert done.ok and done.next is not None and done.next.bundle is None
        job = done.next.job
    assert sorted(seen) == texts and calls == len(texts) + 1
    stats = await store.queue_stats()
    assert (stats.done, stats.queued, stats.processing) == (6, 0, 0)
    demand = await store.fleet_demand()
    assert not demand.workers[0].busy and demand.workers[0].idle_since is not None


async def test_a_replayed_complete_hands_back_the_job_it_claimed(harness: Harness) -> None:
    store = harness.store
    job = await _claimed(harness, ("c", "one"), ("d", "two"), ("e", "three"))
    first = await store.worker_complete(lease_of(job), claim_next=NextClaim())
    replay = await store.worker_complete(lease_of(job), claim_next=NextClaim())
    assert first.next is not None and replay.next is not None
    assert first.next.job is not None and replay.next.job is not None
    assert (replay.next.job.message_id, replay.next.job.lease_id) == (
        first.next.job.message_id,
        first.next.job.lease_id,
    )
    assert replay.next.bundle is not None
    stats = await store.queue_stats()
    assert (stats.done, stats.processing, stats.queued) == (1, 1, 1)


async def test_the_next_claim_can_be_pinned_to_a_conversation(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("a", "a1"))
    await store.enqueue(request("b", "for b", priority=10))
    await store.enqueue(request("a", "a2", priority=90))
    job = await store.worker_claim("w1", conversation_id="b")
    assert job is not None
    done = await store.worker_complete(lease_of(job), claim_next=NextClaim(conversation_id="b"))
    assert done.next is not None and done.next.job is None
    assert (await store.queue_stats()).queued == 2


async def test_a_draining_worker_claims_nothing_next(harness: Harness) -> None:
    store = harness.store
    job = await _claimed(harness, ("a", "one"), ("b", "two"))
    await _drain(harness)
    done = await store.worker_complete(lease_of(job), claim_next=NextClaim())
    assert done.ok and done.next is not None and done.next.job is None and done.next.control.should_stop
    assert (await store.queue_stats()).queued == 1
