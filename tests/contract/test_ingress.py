"""The ingress and secrets roles, the same on every store: update dedupe, pairing, bindings, tokens."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from contracts.errors import AgentUnavailable
from contracts.ingress import (
    PAIRING_MAX_FAILURES,
    PAIRING_WINDOW_MS,
    AppToken,
    PairingAttempt,
    PairingCodeRequest,
    TelegramUpdateRecord,
    TelegramWebhook,
    token_hash,
)
from contracts.models import AgentProfile, AppendRequest, HistoryMessage
from contracts.secrets import reseal_all
from tests.contract.conftest import Harness
from tests.contract.helpers import TEST_BOX, claim_text, lease_of, register, request

pytestmark = pytest.mark.anyio


def attempt(code: str, user: str = "77") -> PairingAttempt:
    return PairingAttempt(code=code, bot_id="900", telegram_user_id=user, telegram_chat_id=user)


async def test_an_update_is_recorded_and_enqueued_once(harness: Harness) -> None:
    store = harness.store
    record = TelegramUpdateRecord(bot_id="900", update_id=5, request=request("telegram:900:1", "hi", external_id="u5"))
    first, again = await store.ingest_telegram_updates([record, record])  # a retry inside one batch
    assert first.duplicate is False and first.message_id is not None
    assert again.duplicate is True and again.message_id == first.message_id
    (ignored,) = await store.ingest_telegram_updates([TelegramUpdateRecord(bot_id="900", update_id=6)])
    assert ignored.duplicate is False and ignored.message_id is None
    assert (await store.ingest_telegram_updates([TelegramUpdateRecord(bot_id="900", update_id=6)]))[0].duplicate
    await register(store)
    assert await claim_text(store) == "hi" and await claim_text(store) is None


async def test_an_update_for_a_missing_agent_is_not_remembered(harness: Harness) -> None:
    record = TelegramUpdateRecord(bot_id="900", update_id=7, request=request("c", "x", agent_key="ghost"))
    fine = TelegramUpdateRecord(bot_id="900", update_id=8, request=request("c2", "y"))
    refused, accepted = await harness.store.ingest_telegram_updates([record, fine])
    assert refused.refused is not None and "ghost" in refused.refused and refused.message_id is None
    assert accepted.message_id is not None and accepted.refused is None  # its neighbour in the batch is kept
    # Nothing of the refused one was kept: once the agent exists, the redelivered update goes through.
    await harness.store.upsert_agent_profile(AgentProfile(agent_key="ghost"))
    (again,) = await harness.store.ingest_telegram_updates([record])
    assert again.duplicate is False and again.message_id is not None


async def test_webhooks_are_found_by_agent_and_by_secret_hash(harness: Harness) -> None:
    store = harness.store
    hook = TelegramWebhook(agent_key="default", bot_id="900", secret_hash=token_hash("s3cret"), bot_username="b")
    stored = await store.set_telegram_webhook(hook)
    assert stored.configured_at is not None
    assert await store.get_telegram_webhook("default") == stored
    assert await store.find_telegram_webhook(token_hash("s3cret")) == stored
    assert await store.find_telegram_webhook(token_hash("other")) is None
    assert await store.get_telegram_webhook("nobody") is None


async def test_a_pairing_code_binds_once_and_expires(harness: Harness) -> None:
    store = harness.store
    await store.upsert_agent_profile(AgentProfile(agent_key="alpha"))
    with pytest.raises(AgentUnavailable):
        await store.create_pairing_code(PairingCodeRequest(code="NOPE2345", agent_key="ghost"))
    code = await store.create_pairing_code(PairingCodeRequest(code="good2345", agent_key="alpha", ttl_ms=60_000))
    assert code.code == "GOOD2345" and code.status == "pending"
    paired = await store.consume_pairing_code(attempt("good2345"))
    assert paired.outcome == "paired" and paired.binding is not None and paired.binding.agent_key == "alpha"
    assert (await store.consume_pairing_code(attempt("GOOD2345"))).outcome == "paired"  # Telegram retried
    assert (await store.consume_pairing_code(attempt("GOOD2345", user="78"))).outcome == "used"
    status = await store.get_pairing_code("GOOD2345")
    assert status is not None and status.status == "used" and status.telegram_user_id == "77"
    binding = await store.resolve_binding("900", "77")
    assert binding == paired.binding
    later = await store.create_pairing_code(PairingCodeRequest(code="LATE2345", agent_key="alpha", ttl_ms=60_000))
    await harness.advance(60_000)
    late = await store.get_pairing_code(later.code)
    assert late is not None and late.status == "expired"
    assert (await store.consume_pairing_code(attempt("LATE2345", user="79"))).outcome == "expired"


async def test_failed_attempts_are_rate_limited_per_user_for_a_window(harness: Harness) -> None:
    store = harness.store
    await store.create_pairing_code(PairingCodeRequest(code="REAL2345", agent_key="default", ttl_ms=3_600_000))
    for i in range(PAIRING_MAX_FAILURES):
        assert (await store.consume_pairing_code(attempt(f"BAD{i}2345"))).outcome == "unknown"
    assert (await store.consume_pairing_code(attempt("REAL2345"))).outcome == "rate_limited"
    assert (await store.consume_pairing_code(attempt("REAL2345", user="other"))).outcome == "paired"
    await harness.advance(PAIRING_WINDOW_MS)
    assert (await store.consume_pairing_code(attempt("REAL2345"))).outcome == "used"


async def test_bindings_are_listed_and_revoked(harness: Harness) -> None:
    store = harness.store
    for n, user in enumerate(("1", "2")):
        await store.create_pairing_code(PairingCodeRequest(code=f"CODE{n}2345", agent_key="default"))
        await store.consume_pairing_code(attempt(f"CODE{n}2345", user=user))
    bindings = await store.list_bindings("default")
    bindings.sort(key=lambda b: b.telegram_user_id)  # bound in the same millisecond
    assert [b.telegram_user_id for b in bindings] == ["1", "2"]
    assert await store.revoke_binding(bindings[0].binding_id) is True
    assert await store.revoke_binding(bindings[0].binding_id) is False
    assert [b.telegram_user_id for b in await store.list_bindings()] == ["2"]
    assert len(await store.list_bindings(include_revoked=True)) == 2
    assert await store.resolve_binding("900", "1") is None


async def test_conversation_messages_carry_status_and_reply(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("app:x:1", "first", external_id="e1"))
    await store.enqueue(request("app:x:1", "second"))
    job = await store.worker_claim("w1")
    assert job is not None
    await store.worker_append_conversation_messages(
        AppendRequest(
            conversation_id="app:x:1",
            message_id=job.message_id,
            messages=[HistoryMessage(role="user", content="first"), HistoryMessage(role="assistant", content="one")],
        )
    )
    assert (await store.worker_complete(lease_of(job))).ok
    messages = await store.conversation_messages("app:x:1")
    assert [(m.text, m.status, m.reply) for m in messages] == [("first", "done", "one"), ("second", "queued", None)]
    assert messages[0].external_message_id == "e1"


async def test_secrets_are_sealed_resolved_and_resealed(harness: Harness) -> None:
    store = harness.store
    await store.import_secret("telegram.botToken.default", SecretStr("111:token"))
    await store.import_secret("telegram.botToken", SecretStr("222:global"))
    found = await store.resolve_secret(["telegram.botToken.other", "telegram.botToken"])
    assert found is not None and found[0] == "telegram.botToken" and found[1].get_secret_value() == "222:global"
    status = await store.secret_status()
    assert [(s.secret_ref, s.version, s.key_id) for s in status] == [
        ("telegram.botToken", 1, TEST_BOX.current.key_id),
        ("telegram.botToken.default", 1, TEST_BOX.current.key_id),
    ]
    assert all("token" not in s.value.get_secret_value() for s in await store.sealed_secrets())
    report = await reseal_all(store, TEST_BOX)
    assert (report.resealed, report.already_current) == (0, 2)


async def test_app_tokens_are_kept_as_hashes_and_revoked(harness: Harness) -> None:
    store = harness.store
    token = AppToken(token_id="tok_1", name="shop", token_hash=token_hash("fat_x"), created_at=await store.now_ms())
    assert await store.create_app_token(token) == token
    assert await store.find_app_token(token_hash("fat_x")) == token
    assert [t.name for t in await store.list_app_tokens()] == ["shop"]
    assert await store.revoke_app_token("tok_1") is True
    assert await store.find_app_token(token_hash("fat_x")) is None
    assert await store.revoke_app_token("tok_1") is False
