"""``factory telegram configure``: point an agent's bot at ``factory serve`` and report readiness.

As upstream's ``configureTelegramWebhook``: the bot token comes from the store's secrets
(``telegram.botToken.<agentKey>``, then ``telegram.botToken``); ``getMe`` names the bot; a fresh
per-agent secret token (random, not derived from the bot token) is generated, its hash stored, and
sent with ``setWebhook``; ``getWebhookInfo`` then tells whether Telegram took it (``isReady``).

The bot token travels in the Bot API's URL path: it is masked out of every error we raise.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr

from contracts.errors import FactoryError, InvalidInput
from contracts.ingress import TelegramWebhook, new_webhook_secret, telegram_token_refs, token_hash
from contracts.models import WireModel
from contracts.redact import mask, url_forms
from contracts.roles import IngressStore, SecretStore

ALLOWED_UPDATES = ["message", "edited_message"]


class TelegramApiError(FactoryError):
    """The Bot API refused a call or could not be reached (the token is never in the message)."""

    def __init__(self, method: str, problem: str, *, retryable: bool) -> None:
        super().__init__(f"Telegram {method}: {problem}")
        self.retryable = retryable


class WebhookReport(WireModel):
    """What configuring found, in upstream's shape."""

    ok: bool
    agent_key: str
    webhook_url: str
    current_url: str
    bot_id: str
    bot_username: str | None = None
    secret_token_configured: bool
    is_ready: bool
    pending_update_count: int = 0
    last_error_message: str | None = None
    last_error_date: int | None = None


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ok: bool
    result: Any = None
    description: str | None = None


class ConfigureStore(IngressStore, SecretStore, Protocol):
    """The roles configuring uses."""


def webhook_url(public_url: str, agent_key: str) -> str:
    """The route ``factory serve`` answers for the agent; HTTPS, as Telegram requires (plain HTTP
    only on loopback, for local runs against a fake)."""
    url = httpx.URL(public_url.strip())
    loopback = url.scheme == "http" and url.host in ("127.0.0.1", "localhost", "::1")
    if url.scheme != "https" and not loopback:
        raise InvalidInput("--public-url", f"{public_url!r} must be https://: Telegram calls HTTPS webhooks only")
    if url.query or url.fragment:
        raise InvalidInput("--public-url", "must not have a query or fragment")
    return f"{str(url).rstrip('/')}/telegram/webhook/{agent_key}"


async def configure_webhook(
    store: ConfigureStore,
    agent_key: str,
    public_url: str,
    *,
    api_base: str = "https://api.telegram.org",
    drop_pending_updates: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
) -> WebhookReport:
    url = webhook_url(public_url, agent_key)
    found = await store.resolve_secret(telegram_token_refs(agent_key))
    if found is None:
        raise InvalidInput(
            "telegram.botToken",
            f"no bot token for agent {agent_key!r}: `factory secrets set telegram.botToken.{agent_key}` first",
        )
    _, token = found
    async with httpx.AsyncClient(timeout=30.0, trust_env=False, transport=transport) as http:
        call = _Caller(http, api_base, token)
        me = await call("getMe", {})
        bot_id = str(me["id"])
        secret = new_webhook_secret()
        await store.set_telegram_webhook(
            TelegramWebhook(
                agent_key=agent_key,
                bot_id=bot_id,
                secret_hash=token_hash(secret),
                bot_username=me.get("username"),
                url=url,
            )
        )
        params = {
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
            "drop_pending_updates": drop_pending_updates,
        }
        await call("setWebhook", params)
        info = await call("getWebhookInfo", {})
    current = str(info.get("url") or "")
    return WebhookReport(
        ok=True,
        agent_key=agent_key,
        webhook_url=url,
        current_url=current,
        bot_id=bot_id,
        bot_username=me.get("username"),
        secret_token_configured=True,
        is_ready=current == url,
        pending_update_count=int(info.get("pending_update_count") or 0),
        last_error_message=info.get("last_error_message"),
        last_error_date=info.get("last_error_date"),
    )


class _Caller:
    def __init__(self, http: httpx.AsyncClient, api_base: str, token: SecretStr) -> None:
        self._http = http
        self._base = api_base.rstrip("/")
        self._token = token

    async def __call__(self, method: str, params: dict[str, Any]) -> Any:
        secret = self._token.get_secret_value()
        try:
            response = await self._http.post(f"{self._base}/bot{secret}/{method}", json=params)
        except httpx.HTTPError as exc:
            problem = mask(f"{type(exc).__name__}: {exc}", url_forms(self._token), "<redacted>")
            raise TelegramApiError(method, problem, retryable=True) from None
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValueError:
            problem = f"HTTP {response.status_code}, not a Bot API answer"
            raise TelegramApiError(method, problem, retryable=True) from None
        if not answer.ok:
            status = response.status_code
            problem = mask(answer.description or f"HTTP {status}", url_forms(self._token), "<redacted>")
            raise TelegramApiError(method, problem, retryable=status >= 500 or status == 429)
        return answer.result
