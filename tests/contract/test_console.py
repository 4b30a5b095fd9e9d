"""What the operator console reads and how it signs operators in, the same on every store."""

from __future__ import annotations

import pytest

from contracts.console import ConsoleSession, OperatorToken
from contracts.ingress import PAIRING_TTL_MIN_MS, PairingCodeRequest, token_hash
from contracts.models import (
    AgentProfile,
    EnqueueRequest,
    MessagePayload,
    ReconcileRecord,
    ReconcileStep,
)
from tests.contract.conftest import Harness
from tests.contract.helpers import fail_of, lease_of, register, request

pytestmark = pytest.mark.anyio


def from_user(conversation_id: str, user: str, *, agent_key: str = "default", text: str = "hi") -> EnqueueRequest:
    payload = MessagePayload(provider="telegram", provider_user_id=user, message_text=text)
    return EnqueueRequest(conversation_id=conversation_id, agent_key=agent_key, payload=payload)


async def test_conversations_are_found_by_id_prefix_agent_or_the_user_who_started_them(harness: Harness) -> None:
    store = harness.store
    await store.upsert_agent_profile(AgentProfile(agent_key="alpha"))
    await store.enqueue(from_user("telegram:900:1", "alice"))
    await harness.advance(1_000)
    await store.enqueue(from_user("telegram:900:2", "bob"))
    await store.enqueue(from_user("telegram:900:2", "alice"))  # alice writes in bob's group: not its starter
    await harness.advance(1_000)
    await store.enqueue(from_user("app:shop:7", "carol", agent_key="alpha"))

    newest = await store.search_conversations()
    assert [c.conversation_id for c in newest] == ["app:shop:7", "telegram:900:2", "telegram:900:1"]
    by_prefix = await store.search_conversations("telegram:900:")
    assert [c.conversation_id for c in by_prefix] == ["telegram:900:2", "telegram:900:1"]
    assert [c.conversation_id for c in await store.search_conversations("alpha")] == ["app:shop:7"]
    assert [c.conversation_id for c in await store.search_conversations("alice")] == ["telegram:900:1"]
    assert await store.search_conversations("nobody") == []
    two = by_prefix[0]
    assert (two.agent_key, two.user_id, two.queued, two.processing, two.done, two.dead_letters) == (
        "default",
        "bob",
        2,
        0,
        0,
        0,
    )
    assert len(await store.search_conversations(limit=1)) == 1


async def test_a_conversations_messages_show_attempts_lease_holder_and_timings(harness: Harness) -> None:
    store = harness.store
    await register(store)
    first = await store.enqueue(request("c", "one", max_attempts=1))
    second = await store.enqueue(request("c", "two"))
    job = await store.worker_claim("w1")
    assert job is not None and job.message_id == first
    processing, queued = await store.conversation_records("c")
    assert (processing.message_id, processing.status, processing.attempts) == (first, "processing", 1)
    assert processing.claimed_by == "w1" and processing.lease_expires_at == job.lease_expires_at
    assert (queued.message_id, queued.status, queued.claimed_by, queued.lease_expires_at) == (
        second,
        "queued",
        None,
        None,
    )
    await harness.advance(250)
    await store.worker_fail(fail_of(job, "the agent said no", retryable=False))
    dead, _ = await store.conversation_records("c")
    assert dead.status == "dead_letter" and dead.lease_expires_at is None
    assert dead.finished_at == dead.enqueued_at + 250 and dead.last_error is not None and "no" in dead.last_error
    assert [m.message_id for m in await store.conversation_records("c", limit=1)] == [second]
    assert await store.conversation_records("nowhere") == []


async def test_settled_messages_carry_their_latency_and_claims_newest_first(harness: Harness) -> None:
    store = harness.store
    await register(store)
    start = await store.now_ms()
    await store.enqueue(request("a", "quick"))
    await store.enqueue(request("b", "doomed"))
    await harness.advance(400)
    quick = await store.worker_claim("w1")
    assert quick is not None
    await store.worker_complete(lease_of(quick))
    await harness.advance(600)
    doomed = await store.worker_claim("w1")
    assert doomed is not None
    await store.worker_fail(fail_of(doomed, retryable=False))

    window = await store.settled_since(start)
    assert window.since == start and window.now >= start + 1_000 and not window.truncated
    assert [(s.status, s.finished_at - s.enqueued_at, s.attempts) for s in window.samples] == [
        ("dead_letter", 1_000, 1),
        ("done", 400, 1),
    ]
    later = await store.settled_since(start + 500)
    assert [s.status for s in later.samples] == ["dead_letter"]
    capped = await store.settled_since(start, limit=1)
    assert capped.truncated and [s.status for s in capped.samples] == ["dead_letter"]


async def test_agents_and_pairing_codes_are_listed(harness: Harness) -> None:
    store = harness.store
    await store.upsert_agent_profile(AgentProfile(agent_key="zeta", enabled=False))
    await store.upsert_agent_profile(AgentProfile(agent_key="alpha"))
    agents = await store.list_agent_profiles()
    assert [(a.agent_key, a.enabled) for a in agents] == [("alpha", True), ("default", True), ("zeta", False)]

    await store.create_pairing_code(PairingCodeRequest(code="OLDCODE234", agent_key="alpha", ttl_ms=PAIRING_TTL_MIN_MS))
    await harness.advance(PAIRING_TTL_MIN_MS + 1)
    await store.create_pairing_code(PairingCodeRequest(code="NEWCODE567", agent_key="default"))
    codes = await store.list_pairing_codes()
    assert [(c.code, c.agent_key, c.status) for c in codes] == [
        ("NEWCODE567", "default", "pending"),
        ("OLDCODE234", "alpha", "expired"),
    ]
    assert [c.code for c in await store.list_pairing_codes(limit=1)] == ["NEWCODE567"]


async def test_the_latest_reconcile_is_kept(harness: Harness) -> None:
    store = harness.store
    assert await store.last_reconcile() is None
    first = ReconcileRecord(at=1, provider="local", dry_run=False, summary="+1", desired=1, current=0, launching=0)
    await store.record_reconcile(first)
    step = ReconcileStep(action="drain", target="worker w1", reason="idle", ok=True, detail="worker w1 draining")
    second = first.model_copy(update={"at": 2, "summary": "-1", "steps": [step]})
    await store.record_reconcile(second)
    assert await store.last_reconcile() == second


async def test_operator_tokens_are_found_by_hash_until_revoked(harness: Harness) -> None:
    store = harness.store
    now = await store.now_ms()
    admin = OperatorToken(token_id="t1", name="ops", role="admin", token_hash=token_hash("fop_a"), created_at=now)
    viewer = OperatorToken(
        token_id="t2", name="viewer", role="read_only", token_hash=token_hash("fop_b"), created_at=now
    )
    assert await store.create_operator_token(admin) == admin
    await store.create_operator_token(viewer)
    assert await store.find_operator_token(token_hash("fop_b")) == viewer
    assert await store.find_operator_token(token_hash("fop_wrong")) is None
    assert [t.name for t in await store.list_operator_tokens()] == ["ops", "viewer"]
    assert await store.revoke_operator_token("t1") is True
    assert await store.revoke_operator_token("t1") is False
    assert await store.find_operator_token(token_hash("fop_a")) is None
    listed = {t.token_id: t for t in await store.list_operator_tokens()}
    assert listed["t1"].revoked_at is not None and listed["t2"].revoked_at is None


async def test_console_sessions_live_until_they_expire_end_or_lose_their_token(harness: Harness) -> None:
    store = harness.store
    now = await store.now_ms()
    token = OperatorToken(token_id="t1", name="ops", role="admin", token_hash=token_hash("fop_a"), created_at=now)
    await store.create_operator_token(token)

    def session(key: str, ttl_ms: int, token_id: str | None = "t1") -> ConsoleSession:
        return ConsoleSession(
            session_hash=token_hash(key),
            operator="ops",
            role="admin",
            token_id=token_id,
            created_at=now,
            expires_at=now + ttl_ms,
        )

    short, long, proxied = session("s-short", 1_000), session("s-long", 60_000), session("s-proxy", 60_000, None)
    for each in (short, long, proxied):
        await store.create_console_session(each)
    assert await store.find_console_session(token_hash("s-short")) == short
    assert await store.find_console_session(token_hash("s-unknown")) is None
    await harness.advance(1_000)
    assert await store.find_console_session(token_hash("s-short")) is None  # expired

    assert await store.end_console_session(token_hash("s-proxy")) is True
    assert await store.end_console_session(token_hash("s-proxy")) is False
    assert await store.find_console_session(token_hash("s-proxy")) is None

    assert await store.find_console_session(token_hash("s-long")) == long
    await store.revoke_operator_token("t1")  # rotating a token signs its sessions out
    assert await store.find_console_session(token_hash("s-long")) is None
