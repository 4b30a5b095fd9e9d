"""A Convex-only deployment takes Telegram traffic: the module's HTTP route, driven by the fake Bot API."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from contracts.convex import ConvexStore
from contracts.convex.standin import StandIn
from contracts.ingress import PairingCodeRequest
from ingress.configure import configure_webhook
from tests.contract.helpers import TEST_BOX
from tests.fakes.telegram_api import run_telegram_fake

pytestmark = [pytest.mark.anyio, pytest.mark.convex]
TOKEN = "9100:convex-only-bot"


async def test_the_modules_webhook_route_enqueues_pairs_and_dedupes(fresh: StandIn) -> None:
    store = ConvexStore(fresh.url, secrets_box=TEST_BOX)
    try:
        async with run_telegram_fake(tokens=[TOKEN]) as telegram:
            await store.import_secret("telegram.botToken.default", SecretStr(TOKEN))
            report = await configure_webhook(store, "default", fresh.url, api_base=telegram.url)
            assert report.is_ready and report.webhook_url == f"{fresh.url}/telegram/webhook/default"
            update = telegram.message_update(chat_id=31, user_id=31, text="hello convex")
            first = await telegram.deliver(TOKEN, update)
            again = await telegram.deliver(TOKEN, update)
            assert first.status_code == again.status_code == 200 and again.json()["duplicate"] is True
            messages = await store.conversation_messages("telegram:9100:31")
            assert [m.text for m in messages] == ["hello convex"]
            forgery = telegram.message_update(chat_id=31, user_id=31, text="x")
            forged = await telegram.deliver(TOKEN, forgery, secret="no")
            assert forged.status_code == 401
            await store.create_pairing_code(PairingCodeRequest(code="CVX23456", agent_key="default"))
            await telegram.deliver(TOKEN, telegram.message_update(chat_id=32, user_id=32, text="/start CVX23456"))
            assert telegram.texts("32") == ["Paired. Your messages here now go to agent default."]
            binding = await store.resolve_binding("9100", "32")
            assert binding is not None and binding.source == "telegram_pairing"
    finally:
        await store.aclose()
