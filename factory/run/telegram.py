"""The demo's Telegram: a tiny in-process Bot API and one user who writes to the bot.

``factory run`` has no real bot, so it serves the few Bot API methods the front door and the
workers call (``getMe``, ``setWebhook``, ``getWebhookInfo``, ``sendMessage``) on loopback, connects
the demo agent's bot to a real ``factory serve`` with ``factory telegram configure``'s code, and
delivers one update to the webhook as Telegram would (with the secret token). The worker's reply
comes back here through ``sendMessage``, and the screen shows it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request
from pydantic import SecretStr

from contracts.errors import FactoryError
from factory.cmd_console import mint
from factory.run.screen import Screen, excerpt
from factory.run.state import RunState, Tracked
from factory.stores import FullStore
from ingress import ConsoleConfig, IngressConfig, IngressServer, PlanSource, ServedStore, create_app
from ingress.configure import configure_webhook

BOT_TOKEN = "4242:factory-run-demo-bot"
CHAT_ID = 4242
GREETING = "Hello from Telegram! What can you do?"


@dataclass
class DemoTelegram:
    """The Bot API as far as the demo needs it; what was sent is kept in ``sent``."""

    webhook: dict[str, Any] = field(default_factory=dict)
    sent: list[tuple[int, str]] = field(default_factory=list)

    def app(self) -> FastAPI:
        api = FastAPI(openapi_url=None)

        @api.post("/bot{token}/{method}")
        async def method(token: str, method: str, request: Request) -> dict[str, Any]:
            if token != BOT_TOKEN:
                return {"ok": False, "error_code": 401, "description": "Unauthorized"}
            params = json.loads(await request.body() or b"{}")
            return {"ok": True, "result": self.call(method, params)}

        return api

    def call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {"id": int(BOT_TOKEN.split(":")[0]), "is_bot": True, "username": "factory_demo_bot"}
        if method == "setWebhook":
            self.webhook = dict(params)
            return True
        if method == "getWebhookInfo":
            return {"url": self.webhook.get("url", ""), "pending_update_count": 0}
        if method == "sendMessage":
            self.sent.append((int(params["chat_id"]), str(params["text"])))
            return {"message_id": len(self.sent)}
        return None

    async def deliver(self, text: str, update_id: int) -> dict[str, Any]:
        update = {
            "update_id": update_id,
            "message": {"message_id": update_id, "from": {"id": CHAT_ID}, "chat": {"id": CHAT_ID}, "text": text},
        }
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook["secret_token"]}
        async with httpx.AsyncClient(timeout=30) as client:
            reply = await client.post(self.webhook["url"], json=update, headers=headers)
        reply.raise_for_status()
        answer: dict[str, Any] = reply.json()
        return answer


async def start_front_door(
    stack: AsyncExitStack,
    screen: Screen,
    store: FullStore,
    open_store: Callable[[], ServedStore],
    plans: PlanSource,
) -> tuple[DemoTelegram, str]:
    """Start the demo's Bot API and a real `factory serve` on loopback (the operator console
    included); connect the bot; returns the Bot API's base URL for the workers."""
    telegram = DemoTelegram()
    tg = await stack.enter_async_context(anyio.create_task_group())
    bot_api = IngressServer(telegram.app(), port=0, grace_s=1)
    # A short refresh: the demo is over in half a minute.
    console = ConsoleConfig(refresh_s=1.0)
    serve = IngressServer(create_app(open_store, IngressConfig(), console, plans), port=0, grace_s=1)
    for server in (bot_api, serve):
        await tg.start(server.serve)
        stack.callback(server.stop)
    await store.import_secret("telegram.botToken.default", SecretStr(BOT_TOKEN))
    report = await configure_webhook(store, "default", serve.url, api_base=bot_api.url)
    ready = "ready" if report.is_ready else "NOT ready"
    screen.line(f"front door: factory serve on {serve.url}; the demo bot's webhook is {ready}")
    token, _ = await mint(store, "demo", "admin")
    screen.line(f"operator console: {serve.url}/console  (live while the demo runs)")
    screen.line(f"  demo sign-in token, for this demo store only: {token}")
    return telegram, bot_api.url


async def say_hello(telegram: DemoTelegram, store: FullStore, state: RunState) -> None:
    """The demo user's message, through the webhook: tracked like the burst's."""
    answer = await telegram.deliver(GREETING, update_id=1)
    message_id = str(answer["messageId"])
    record = await store.get_message(message_id)
    if record is None:
        raise FactoryError(f"the webhook accepted the demo update as {message_id}, but the store has no such message")
    state.messages[message_id] = Tracked(message_id, record.conversation_id, GREETING, record.enqueued_at)
    state.total += 1


def show_replies(screen: Screen, telegram: DemoTelegram) -> None:
    for chat, text in telegram.sent:
        screen.line(f"telegram reply to chat {chat}: {excerpt(text, 100)}")
    if not telegram.sent:
        screen.line("telegram: no reply reached the demo bot", style="yellow")
