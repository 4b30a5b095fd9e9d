"""Push schedules and broadcasts: the schedule role, the same on every store."""

from __future__ import annotations

import pytest

from contracts.errors import InvalidInput, NotFound
from contracts.ingress import PairingAttempt, PairingCodeRequest
from contracts.models import AgentProfile
from contracts.push import BroadcastRequest, PushDispatchRequest, PushJob, PushTemplate, Schedule
from tests.contract.conftest import Harness
from tests.contract.helpers import claim_text, fail_of, register, request

pytestmark = pytest.mark.anyio
DAILY = Schedule(kind="daily", at="09:00", tz="Europe/Rome")


async def _job(harness: Harness, *, next_run_at: int, conversation: str = "tg-chat") -> PushJob:
    store = harness.store
    await store.push_template_put(PushTemplate(template_id="morning", agent_key="default", text="Buongiorno {name}!"))
    job = PushJob(
        job_id="alice-morning",
        template_id="morning",
        conversation_id=conversation,
        schedule=DAILY,
        variables={"name": "Alice"},
        next_run_at=next_run_at,
    )
    return await store.push_job_put(job)


def _slot(job: PushJob, slot_at: int, next_at: int) -> PushDispatchRequest:
    return PushDispatchRequest(
        job_id=job.job_id,
        run_key=f"job:{job.job_id}:{slot_at}",
        slot_at=slot_at,
        expected_next_run_at=job.next_run_at,
        next_run_at=next_at,
    )


async def test_templates_and_jobs_are_kept_listed_and_deleted(harness: Harness) -> None:
    store = harness.store
    now = await store.now_ms()
    job = await _job(harness, next_run_at=now + 1_000)
    assert [t.template_id for t in await store.push_templates()] == ["morning"]
    assert (await store.push_jobs())[0] == job
    assert job.created_at is not None and job.updated_at is not None
    assert await store.push_jobs(due_at=now) == []
    assert [j.job_id for j in await store.push_jobs(due_at=now + 1_000)] == ["alice-morning"]
    disabled = await store.push_job_put(job.model_copy(update={"enabled": False}))
    assert not disabled.enabled
    assert await store.push_jobs(due_at=now + 1_000) == []
    with pytest.raises(InvalidInput, match="used by job"):
        await store.push_template_delete("morning")
    with pytest.raises(NotFound):
        await store.push_job_put(job.model_copy(update={"template_id": "no-such-template"}))
    assert await store.push_job_delete("alice-morning")
    assert not await store.push_job_delete("alice-morning")
    assert await store.push_template_delete("morning")
    assert await store.push_templates() == []


async def test_a_slot_is_enqueued_once_to_the_chat_it_answers(harness: Harness) -> None:
    store = harness.store
    await register(store)
    # The conversation began on Telegram: the push goes back to that chat.
    await store.enqueue(request("tg-chat", "ciao", provider="telegram"))
    assert await claim_text(store) == "ciao"
    now = await store.now_ms()
    job = await _job(harness, next_run_at=now)
    slot = _slot(job, now, now + 86_400_000)
    first = await store.push_dispatch(slot)
    assert (first.status, first.fresh, first.run_key) == ("enqueued", True, f"job:alice-morning:{now}")
    again = await store.push_dispatch(slot)
    assert (again.fresh, again.message_id) == (False, first.message_id)
    stale = await store.push_dispatch(slot.model_copy(update={"run_key": "job:alice-morning:1"}))
    assert (stale.fresh, stale.status) == (False, "skipped")
    pushed = await store.worker_claim("w1")
    assert pushed is not None and pushed.message_id == first.message_id
    assert pushed.payload.provider == "system_push"
    assert pushed.payload.provider_user_id == "user-1"
    assert pushed.payload.message_text == "Buongiorno Alice!"
    assert pushed.payload.external_message_id == f"job:alice-morning:{now}"
    assert pushed.payload.metadata == {
        "telegramChatId": "user-1",
        "pushJobId": "alice-morning",
        "runKey": f"job:alice-morning:{now}",
        "pushMode": "scheduled",
    }
    (moved,) = await store.push_jobs()
    assert (moved.next_run_at, moved.last_run_at, moved.last_run_key) == (now + 86_400_000, now, first.run_key)
    assert [d.run_key for d in await store.push_dispatches("alice-morning")] == [first.run_key]


async def test_a_failed_or_skipped_slot_is_recorded_and_the_job_moves_on(harness: Harness) -> None:
    store = harness.store
    now = await store.now_ms()
    job = await _job(harness, next_run_at=now)
    await store.upsert_agent_profile(AgentProfile(agent_key="default", enabled=False))
    failed = await store.push_dispatch(_slot(job, now, now + 1))
    assert failed.status == "failed"
    assert failed.error is not None and "disabled" in failed.error
    (moved,) = await store.push_jobs()
    skip = _slot(moved, now + 1, now + 2).model_copy(update={"skip_reason": "missed by 7200 s"})
    skipped = await store.push_dispatch(skip)
    assert (skipped.status, skipped.error, skipped.message_id) == ("skipped", "missed by 7200 s", None)
    assert (await store.queue_stats()).queued == 0


async def test_run_now_sends_without_touching_the_schedule(harness: Harness) -> None:
    store = harness.store
    now = await store.now_ms()
    job = await _job(harness, next_run_at=now + 3_600_000)
    manual = PushDispatchRequest(job_id=job.job_id, run_key=f"manual:{job.job_id}:{now}", slot_at=now, mode="manual")
    result = await store.push_dispatch(manual)
    assert result.status == "enqueued"
    (after,) = await store.push_jobs()
    assert after.next_run_at == now + 3_600_000
    assert after.last_run_key == manual.run_key


async def test_a_broadcast_reaches_every_conversation_once_with_an_audit(harness: Harness) -> None:
    store = harness.store
    await store.upsert_agent_profile(AgentProfile(agent_key="sales"))
    await store.upsert_agent_profile(AgentProfile(agent_key="dormant"))
    for i in range(3):
        await store.enqueue(request(f"default-{i}", "x"))
    await store.enqueue(request("sales-0", "x", agent_key="sales"))
    await store.enqueue(request("dormant-0", "x", agent_key="dormant"))
    await store.upsert_agent_profile(AgentProfile(agent_key="dormant", enabled=False))
    first = await store.broadcast(BroadcastRequest(broadcast_id="b1", text="We are moving!", requested_by="ops"))
    assert first.fresh and first.status == "done" and first.requested_by == "ops"
    assert [(r.agent_key, r.conversation_id, r.status) for r in first.recipients] == [
        ("default", "default-0", "enqueued"),
        ("default", "default-1", "enqueued"),
        ("default", "default-2", "enqueued"),
        ("sales", "sales-0", "enqueued"),
    ]
    assert len(first.text_sha256) == 64
    again = await store.broadcast(BroadcastRequest(broadcast_id="b1", text="We are moving!", requested_by="ops"))
    assert not again.fresh
    assert again.recipients == first.recipients
    await harness.advance(1_000)
    only_sales = await store.broadcast(
        BroadcastRequest(broadcast_id="b2", text="sales only", requested_by="ops", agents=["sales"])
    )
    assert [r.conversation_id for r in only_sales.recipients] == ["sales-0"]
    assert (await store.queue_stats()).queued == 5 + 4 + 1
    assert [b.broadcast_id for b in await store.broadcasts()] == ["b2", "b1"]


async def test_a_push_that_fails_dead_letters_with_its_run_key(harness: Harness) -> None:
    store = harness.store
    await register(store)
    now = await store.now_ms()
    job = await _job(harness, next_run_at=now)
    dispatched = await store.push_dispatch(_slot(job, now, now + 1))
    pushed = await store.worker_claim("w1")
    assert pushed is not None
    await store.worker_fail(fail_of(pushed, "the agent refused", retryable=False))
    (dead,) = await store.list_dead_letters()
    assert (dead.message_id, dead.external_message_id) == (dispatched.message_id, f"job:alice-morning:{now}")


async def _pair(harness: Harness, agent: str, user: str) -> str:
    store = harness.store
    code = await store.create_pairing_code(PairingCodeRequest(code=f"PAIR{user}2345", agent_key=agent))
    attempt = PairingAttempt(code=code.code, bot_id="900", telegram_user_id=user, telegram_chat_id=f"chat-{user}")
    paired = await store.consume_pairing_code(attempt)
    assert paired.binding is not None
    return paired.binding.conversation_id


async def test_a_job_for_a_telegram_user_follows_their_binding(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.upsert_agent_profile(AgentProfile(agent_key="coach"))
    now = await store.now_ms()
    await store.push_template_put(PushTemplate(template_id="nudge", agent_key="default", text="time to stretch"))
    job = await store.push_job_put(
        PushJob(job_id="u77", template_id="nudge", telegram_user_id="77", bot_id="900", schedule=DAILY, next_run_at=now)
    )
    unbound = await store.push_dispatch(_slot(job, now, now + 1))
    assert unbound.status == "failed" and unbound.error is not None and "binding" in unbound.error
    bound_conversation = await _pair(harness, "coach", "77")
    (moved,) = await store.push_jobs()
    sent = await store.push_dispatch(_slot(moved, now + 1, now + 2))
    assert sent.status == "enqueued"
    pushed = await store.worker_claim("w1")
    assert pushed is not None
    assert (pushed.conversation_id, pushed.agent_key) == (bound_conversation, "coach")  # the bound agent speaks
    assert pushed.payload.metadata is not None and pushed.payload.metadata["telegramChatId"] == "chat-77"
    assert pushed.payload.provider_user_id == "77"


async def test_a_broadcast_reaches_a_user_who_paired_but_never_wrote(harness: Harness) -> None:
    store = harness.store
    await store.enqueue(request("chatty", "hello"))
    silent = await _pair(harness, "default", "55")
    result = await store.broadcast(BroadcastRequest(broadcast_id="b-pair", text="news", requested_by="ops"))
    assert sorted(r.conversation_id for r in result.recipients) == sorted(["chatty", silent])
    assert all(r.status == "enqueued" for r in result.recipients)
    conversation = await store.get_conversation(silent)
    assert conversation is not None and conversation.queued == 1
