"""The Telegram webhook of `factory serve`, driven by a loopback fake of the Bot API over real HTTP."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import anyio
import httpx
import pytest

from contracts.ingress import PAIRING_MAX_FAILURES, PairingCodeRequest, token_hash
from contracts.models import AgentProfile
from contracts.sqlite import SqliteStore
from ingress import IngressConfig
from tests.contract.helpers import TEST_BOX
from tests.fakes.telegram_api import TelegramApiFake
from tests.ingress.conftest import BOT_TOKEN, OTHER_TOKEN, Served, connect_bot, serve_on

pytestmark = pytest.mark.anyio
BOT_ID = BOT_TOKEN.split(":")[0]


async def messages_in(store: SqliteStore, conversation: str) -> list[str]:
    return [m.text for m in await store.conversation_messages(conversation)]


async def test_configure_registers_a_random_secret_and_reports_ready(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    method, params = telegram.webhook_calls[-1]
    assert method == "setWebhook"
    assert params["url"] == f"{served.url}/telegram/webhook/default"
    assert params["allowed_updates"] == ["message", "edited_message"]
    secret = params["secret_token"]
    assert len(secret) >= 32 and BOT_TOKEN.split(":")[1] not in secret
    webhook = await store.get_telegram_webhook("default")
    assert webhook is not None and webhook.bot_id == BOT_ID
    assert webhook.secret_hash == token_hash(secret) and secret not in served.db.read_bytes().decode("latin-1")


async def test_a_text_update_is_enqueued_once_however_often_telegram_sends_it(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    update = telegram.message_update(chat_id=501, user_id=501, text="hello <b>agent</b>")
    first = await telegram.deliver(BOT_TOKEN, update)
    again = await telegram.deliver(BOT_TOKEN, update)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"ok": True, "messageId": first.json()["messageId"], "duplicate": True}
    conversation = f"telegram:{BOT_ID}:501"
    assert await messages_in(store, conversation) == ["hello <b>agent</b>"]
    record = await store.get_message(first.json()["messageId"])
    assert record is not None and record.agent_key == "default"
    assert record.payload.provider == "telegram" and record.payload.provider_user_id == "501"
    assert record.payload.metadata is not None and record.payload.metadata["telegramChatId"] == "501"


async def test_the_update_id_is_remembered_across_a_restart(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    update = telegram.message_update(chat_id=502, user_id=502, text="before the restart")
    assert (await telegram.deliver(BOT_TOKEN, update)).json()["duplicate"] is False
    # A second server (a restarted process) on the same store sees the same update as a duplicate.
    for restarted in serve_on(served.db, IngressConfig(webhook_cache_s=0)):
        telegram.webhooks[BOT_TOKEN]["url"] = f"{restarted.url}/telegram/webhook/default"
        assert (await telegram.deliver(BOT_TOKEN, update)).json()["duplicate"] is True
    assert await messages_in(store, f"telegram:{BOT_ID}:502") == ["before the restart"]


@pytest.mark.parametrize("secret", [None, "wrong-secret"], ids=["missing", "wrong"])
async def test_a_missing_or_wrong_secret_is_refused_and_nothing_is_stored(
    store: SqliteStore, telegram: TelegramApiFake, served: Served, secret: str | None
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    update = telegram.message_update(chat_id=503, user_id=503, text="forged")
    url = telegram.webhooks[BOT_TOKEN]["url"]
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with httpx.AsyncClient() as client:
        direct = await client.post(url, json=update, headers=headers)
        upstream = await client.post(f"{served.url}/agent-factory/telegram/webhook", json=update, headers=headers)
    assert direct.status_code == upstream.status_code == 401
    assert await messages_in(store, f"telegram:{BOT_ID}:503") == []
    assert await store.get_conversation(f"telegram:{BOT_ID}:503") is None


async def test_upstreams_path_finds_the_agent_by_its_secret(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    secret = telegram.webhooks[BOT_TOKEN]["secret_token"]
    update = telegram.message_update(chat_id=504, user_id=504, text="via the upstream path")
    async with httpx.AsyncClient() as client:
        reply = await client.post(
            f"{served.url}/agent-factory/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": secret},
        )
    assert reply.status_code == 200 and reply.json()["ok"] is True
    assert await messages_in(store, f"telegram:{BOT_ID}:504") == ["via the upstream path"]


async def test_malformed_and_oversized_bodies_are_refused_with_nothing_stored(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    hook = telegram.webhooks[BOT_TOKEN]
    headers = {"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"], "Content-Type": "application/json"}
    big = json.dumps(telegram.message_update(chat_id=505, user_id=505, text="x" * 1_100_000))
    async with httpx.AsyncClient() as client:
        not_json = await client.post(hook["url"], content=b"{not json", headers=headers)
        not_update = await client.post(hook["url"], content=b'{"message": {}}', headers=headers)
        too_big = await client.post(hook["url"], content=big.encode(), headers=headers)
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert not_update.status_code == 400 and "update_id" in not_update.json()["error"]
    assert too_big.status_code == 413
    assert await store.get_conversation(f"telegram:{BOT_ID}:505") is None


async def test_a_store_outage_answers_503_and_the_redelivery_is_stored_once(
    store: SqliteStore, telegram: TelegramApiFake, tmp_path: Path
) -> None:
    for front in serve_on(tmp_path / "outage.db", IngressConfig(webhook_cache_s=0), busy_timeout_s=0.3):
        outage_store = SqliteStore(front.db, secrets_box=TEST_BOX)
        try:
            await connect_bot(outage_store, telegram, front, "default", OTHER_TOKEN)
            update = telegram.message_update(chat_id=520, user_id=520, text="during the outage")
            locker = sqlite3.connect(front.db, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # another process holds the database: the store cannot answer
            try:
                down = await telegram.deliver(OTHER_TOKEN, update)
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            assert down.status_code == 503
            assert telegram.webhooks[OTHER_TOKEN]["pending_update_count"] == 1  # Telegram keeps it
            up = await telegram.deliver(OTHER_TOKEN, update)
            assert up.status_code == 200 and up.json()["duplicate"] is False
            messages = await outage_store.conversation_messages(f"telegram:{OTHER_TOKEN.split(':')[0]}:520")
            assert [m.text for m in messages] == ["during the outage"]
        finally:
            await outage_store.aclose()


async def test_media_and_edits_become_attachments_and_metadata(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    photo = telegram.message_update(
        chat_id=506,
        user_id=506,
        caption="look",
        photo=[
            {"file_id": "small", "width": 90, "height": 90, "file_size": 900},
            {"file_id": "large", "width": 1280, "height": 960, "file_size": 90_000},
        ],
    )
    voice = telegram.message_update(
        chat_id=506, user_id=506, voice={"file_id": "v1", "mime_type": "audio/ogg", "file_size": 3000}
    )
    edited = telegram.message_update(chat_id=506, user_id=506, text="fixed typo")
    edited["edited_message"] = edited.pop("message")
    for update in (photo, voice, edited):
        assert (await telegram.deliver(BOT_TOKEN, update)).status_code == 200
    ids = [m.message_id for m in await store.conversation_messages(f"telegram:{BOT_ID}:506")]
    records = [await store.get_message(i) for i in ids]
    payloads = [r.payload for r in records if r is not None]
    assert [p.message_text for p in payloads] == ["look", "[telegram media] voice message", "fixed typo"]
    assert payloads[0].attachments is not None and payloads[0].attachments[0].telegram_file_id == "large"
    assert payloads[0].attachments[0].kind == "photo"
    assert payloads[1].attachments is not None and payloads[1].attachments[0].mime_type == "audio/ogg"
    assert payloads[2].metadata is not None and payloads[2].metadata["telegramEdited"] == "true"


async def test_pairing_binds_the_user_and_routes_later_messages_to_the_agent(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    await store.upsert_agent_profile(AgentProfile(agent_key="alpha"))
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    code = await store.create_pairing_code(PairingCodeRequest(code="PAIRME2345", agent_key="alpha"))
    await telegram.deliver(BOT_TOKEN, telegram.message_update(chat_id=507, user_id=507, text=f"/start {code.code}"))
    assert telegram.texts("507") == ["Paired. Your messages here now go to agent alpha."]
    status = await store.get_pairing_code(code.code)
    assert status is not None and status.status == "used" and status.telegram_user_id == "507"
    binding = await store.resolve_binding(BOT_ID, "507")
    assert binding is not None and binding.agent_key == "alpha"
    reply = await telegram.deliver(BOT_TOKEN, telegram.message_update(chat_id=507, user_id=507, text="hi alpha"))
    record = await store.get_message(reply.json()["messageId"])
    assert record is not None and record.agent_key == "alpha" and record.conversation_id == binding.conversation_id
    # The code is single-use: another user cannot take it over.
    await telegram.deliver(BOT_TOKEN, telegram.message_update(chat_id=508, user_id=508, text=f"/start {code.code}"))
    assert telegram.texts("508") == ["That pairing code has already been used. Ask for a new one."]
    assert await store.resolve_binding(BOT_ID, "508") is None


async def test_guessing_codes_is_rate_limited(store: SqliteStore, telegram: TelegramApiFake, served: Served) -> None:
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    real = await store.create_pairing_code(PairingCodeRequest(code="REALCODE99", agent_key="default"))
    for i in range(PAIRING_MAX_FAILURES):
        guess = telegram.message_update(chat_id=509, user_id=509, text=f"/start GUESS{i:05d}")
        await telegram.deliver(BOT_TOKEN, guess)
    await telegram.deliver(BOT_TOKEN, telegram.message_update(chat_id=509, user_id=509, text=f"/start {real.code}"))
    assert telegram.texts("509")[-1] == "Too many pairing attempts. Wait a few minutes, then try again."
    assert await store.resolve_binding(BOT_ID, "509") is None
    assert (await store.get_pairing_code(real.code)) is not None


async def test_unbound_users_are_told_to_pair_when_a_binding_is_required(
    store: SqliteStore, telegram: TelegramApiFake, tmp_path: Path
) -> None:
    for strict in serve_on(tmp_path / "strict.db", IngressConfig(require_binding_for_telegram=True)):
        strict_store = SqliteStore(strict.db, secrets_box=TEST_BOX)
        try:
            await connect_bot(strict_store, telegram, strict, "default", OTHER_TOKEN)
            await telegram.deliver(OTHER_TOKEN, telegram.message_update(chat_id=510, user_id=510, text="let me in"))
            assert "only talks to paired users" in telegram.texts("510")[0]
            assert await strict_store.get_conversation(f"telegram:{OTHER_TOKEN.split(':')[0]}:510") is None
        finally:
            await strict_store.aclose()


async def test_a_burst_of_updates_loses_and_duplicates_nothing(
    store: SqliteStore, telegram: TelegramApiFake, served: Served
) -> None:
    """The short form of the 1,000 updates/s × 10 s check (the full one is `make bench`): 400
    updates from 100 chats at up to 1,000/s with 200 connections, a tenth of them delivered twice."""
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    chats = [10_000 + i % 100 for i in range(400)]
    updates = [telegram.message_update(chat_id=c, user_id=c, text=f"n{i}") for i, c in enumerate(chats)]
    statuses: list[int] = []
    limiter = anyio.CapacityLimiter(200)

    async def send(update: dict[str, object]) -> None:
        async with limiter:
            for _ in range(5):  # Telegram redelivers what did not get an answer
                try:
                    statuses.append((await telegram.deliver(BOT_TOKEN, update)).status_code)
                    return
                except httpx.TransportError:
                    await anyio.sleep(0.5)

    async with anyio.create_task_group() as tg:
        for i, update in enumerate(updates):
            tg.start_soon(send, update)
            if i % 10 == 0:
                tg.start_soon(send, update)  # Telegram retrying
            if i % 50 == 49:
                await anyio.sleep(0.05)  # at most 1,000 new updates a second
    assert statuses.count(200) == len(statuses) == 440
    seen: list[str] = []
    for chat in range(100):
        seen += await messages_in(store, f"telegram:{BOT_ID}:{10_000 + chat}")
    assert sorted(seen) == sorted(f"n{i}" for i in range(400))
