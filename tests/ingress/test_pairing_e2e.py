"""End to end: a Telegram user pairs, writes, and the agent's reply reaches them, through a real
`factory serve`, a real worker and a real OpenClaw gateway; Telegram is the loopback fake."""

from __future__ import annotations

import pytest

from contracts.ingress import PairingCodeRequest
from contracts.models import AgentProfile
from contracts.sqlite import SqliteStore
from tests.fakes.telegram_api import TelegramApiFake
from tests.gateway_fixture import OpenClawGateway
from tests.ingress.conftest import BOT_TOKEN, Served, connect_bot
from tests.worker.harness import build_worker
from worker.openclaw.ws import WsDelivery
from worker.telegram import TelegramChannel

pytestmark = [pytest.mark.anyio, pytest.mark.gateway]


async def test_start_code_binds_and_the_workers_reply_reaches_telegram(
    store: SqliteStore, telegram: TelegramApiFake, served: Served, openclaw_gateway: OpenClawGateway
) -> None:
    # The bot is the default agent's; "helper" answers through it, so its profile names that token.
    helper = AgentProfile(agent_key="helper", openclaw_agent_id="alpha", secrets_ref=["telegram.botToken.default"])
    await store.upsert_agent_profile(helper)
    await connect_bot(store, telegram, served, "default", BOT_TOKEN)
    code = await store.create_pairing_code(PairingCodeRequest(code="E2EPAIR234", agent_key="helper"))
    await telegram.deliver(BOT_TOKEN, telegram.message_update(chat_id=601, user_id=601, text=f"/start {code.code}"))
    assert telegram.texts("601") == ["Paired. Your messages here now go to agent helper."]
    sent = await telegram.deliver(BOT_TOKEN, telegram.message_update(chat_id=601, user_id=601, text="paired hello"))
    record = await store.get_message(sent.json()["messageId"])
    assert record is not None and record.agent_key == "helper"
    async with (
        WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery,
        TelegramChannel(api_base=telegram.url) as channel,
    ):
        worker, _ = build_worker(store, delivery, telegram=channel, once=True, conversation_id=record.conversation_id)
        assert (await worker.run()).processed == 1
    assert telegram.texts("601")[-1] == "STUB-REPLY: paired hello"
    assert openclaw_gateway.calls_for("paired hello")
