"""The Telegram webhook: check the secret, read the update, enqueue (or pair), answer 200 fast.

``POST /telegram/webhook/{agentKey}`` is the route ``factory telegram configure`` registers;
``POST /agent-factory/telegram/webhook`` (upstream's path) finds the agent by the secret token alone.

What each outcome answers, and why:

* no webhook configured for the agent → 404; a missing or wrong ``X-Telegram-Bot-Api-Secret-Token``
  → 401; nothing is read past the headers and nothing is stored.
* a body over the cap → 413; not JSON, or not an update → 400; nothing stored.
* the store is unavailable → 503: Telegram retries the update later, so nothing is lost.
* anything else → 200 once the update is committed (concurrent updates share one transaction:
  ``ingress.batcher``), so Telegram does not retry what a retry cannot fix: an update we ignore, a
  pairing answer (performed by Telegram from the response body: ``{"method": "sendMessage", …}``),
  a duplicate update (recorded once, enqueued once), an agent that is disabled (logged).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from contracts.errors import StoreError
from contracts.ingress import (
    PairingAttempt,
    TelegramUpdateRecord,
    TelegramWebhook,
    telegram_conversation_id,
    token_hash,
    token_matches,
)
from ingress.batcher import UpdateBatcher
from ingress.config import IngressConfig
from ingress.telegram import (
    NOT_PAIRED,
    PAIRING_REPLIES,
    Ignore,
    Inbound,
    MalformedUpdate,
    Pair,
    enqueue_request,
    interpret,
    parse_update,
    send_message,
)

if TYPE_CHECKING:
    from ingress.app import FrontDoorStore

SECRET_HEADER = "x-telegram-bot-api-secret-token"
UPSTREAM_PATH = "/agent-factory/telegram/webhook"
log = structlog.get_logger("ingress.telegram")


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, cap: int) -> bytes:
    """The body, refused as soon as it passes ``cap`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise BodyTooLarge
    return bytes(body)


class WebhookCache:
    """Webhook configurations by agent and by secret hash, reused for ``ttl_s`` (misses too)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, TelegramWebhook | None]] = {}

    def get(self, key: str) -> tuple[bool, TelegramWebhook | None]:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self._ttl_s:
            return False, None
        return True, entry[1]

    def put(self, key: str, webhook: TelegramWebhook | None) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()  # a bound, not an eviction policy: misses are cheap to refill
        self._entries[key] = (time.monotonic(), webhook)


def _answer(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


class TelegramIngress:
    """The webhook's work, route by route; the store and the config are the app's."""

    def __init__(self, store: FrontDoorStore, config: IngressConfig, batcher: UpdateBatcher) -> None:
        self.store = store
        self.config = config
        self.cache = WebhookCache(config.webhook_cache_s)
        self.batcher = batcher

    async def by_agent(self, agent_key: str) -> TelegramWebhook | None:
        hit, found = self.cache.get("agent:" + agent_key)
        if not hit:
            found = await self.store.get_telegram_webhook(agent_key)
            self.cache.put("agent:" + agent_key, found)
        return found

    async def by_secret(self, secret: str) -> TelegramWebhook | None:
        digest = token_hash(secret)
        hit, found = self.cache.get("secret:" + digest)
        if not hit:
            found = await self.store.find_telegram_webhook(digest)
            self.cache.put("secret:" + digest, found)
        return found

    async def accept(self, request: Request, webhook: TelegramWebhook) -> JSONResponse:
        try:
            body = await read_capped(request, self.config.max_body_bytes)
            update = parse_update(body)
        except BodyTooLarge:
            return _answer({"ok": False, "error": f"body: over {self.config.max_body_bytes} bytes"}, 413)
        except MalformedUpdate as exc:
            return _answer({"ok": False, "error": str(exc)}, 400)
        try:
            meaning = interpret(update)
            if isinstance(meaning, Ignore):
                return self.ignore(meaning)
            if isinstance(meaning, Pair):
                return await self.pair(webhook, meaning)
            return await self.inbound(webhook, update.update_id, meaning)
        except StoreError as exc:
            # Telegram redelivers on a non-2xx answer: the update waits out the outage there.
            log.warning("telegram.store_unavailable", agent_key=webhook.agent_key, error=str(exc))
            return _answer({"ok": False, "error": "store unavailable; retry later"}, 503)

    @staticmethod
    def ignore(meaning: Ignore) -> JSONResponse:
        if meaning.reply is not None and meaning.chat_id is not None:
            return _answer(send_message(meaning.chat_id, meaning.reply))
        return _answer({"ok": True, "ignored": meaning.reason})

    async def pair(self, webhook: TelegramWebhook, meaning: Pair) -> JSONResponse:
        attempt = PairingAttempt(
            code=meaning.code,
            bot_id=webhook.bot_id,
            telegram_user_id=meaning.user_id,
            telegram_chat_id=str(meaning.chat_id),
        )
        result = await self.store.consume_pairing_code(attempt)
        log.info("telegram.pairing", agent_key=result.agent_key, outcome=result.outcome)
        return _answer(send_message(meaning.chat_id, PAIRING_REPLIES[result.outcome].format(agent=result.agent_key)))

    async def inbound(self, webhook: TelegramWebhook, update_id: int, meaning: Inbound) -> JSONResponse:
        binding = await self.store.resolve_binding(webhook.bot_id, meaning.user_id)
        if binding is not None:
            agent_key, conversation_id = binding.agent_key, binding.conversation_id
        elif self.config.require_binding_for_telegram:
            return _answer(send_message(meaning.chat_id, NOT_PAIRED))
        else:
            agent_key = self.config.fallback_agent_key or webhook.agent_key
            conversation_id = telegram_conversation_id(webhook.bot_id, str(meaning.chat_id))
        request = enqueue_request(
            meaning, bot_id=webhook.bot_id, update_id=update_id, agent_key=agent_key, conversation_id=conversation_id
        )
        result = await self.batcher.submit(
            TelegramUpdateRecord(bot_id=webhook.bot_id, update_id=update_id, request=request)
        )
        if result.refused is not None:
            # Redelivery cannot fix this; say so in the log and let Telegram move on.
            log.warning("telegram.not_enqueued", agent_key=agent_key, update_id=update_id, error=result.refused)
            return _answer({"ok": False, "error": result.refused})
        return _answer({"ok": True, "messageId": result.message_id, "duplicate": result.duplicate})


def build_router(store: FrontDoorStore, config: IngressConfig, batcher: UpdateBatcher) -> APIRouter:
    router = APIRouter(tags=["telegram"], include_in_schema=False)
    ingress = TelegramIngress(store, config, batcher)

    @router.post("/telegram/webhook/{agent_key}")
    async def telegram_webhook(agent_key: str, request: Request) -> JSONResponse:
        webhook = await ingress.by_agent(agent_key)
        if webhook is None:
            return _answer({"ok": False, "error": f"agent {agent_key!r} has no Telegram webhook configured"}, 404)
        if not token_matches(request.headers.get(SECRET_HEADER), webhook.secret_hash):
            return _answer({"ok": False, "error": "secret token missing or wrong"}, 401)
        return await ingress.accept(request, webhook)

    @router.post(UPSTREAM_PATH)
    async def upstream_webhook(request: Request) -> JSONResponse:
        secret = request.headers.get(SECRET_HEADER)
        webhook = await ingress.by_secret(secret) if secret else None
        if webhook is None:
            return _answer({"ok": False, "error": "secret token missing or wrong"}, 401)
        return await ingress.accept(request, webhook)

    return router
