"""Wire models and pure rules of the front door: Telegram webhooks, pairing, bindings, app tokens.

Every binding (the SQLite store, the Convex module) keeps these shapes and applies these rules; the
ASGI app (``ingress/``) and the CLI only carry them out. Credentials never travel in the clear here:
a webhook's secret token and an app's bearer token are stored as SHA-256 hashes, secrets as
ciphertext (:mod:`contracts.secrets`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from pydantic import Field, SecretStr

from contracts.models import EnqueueRequest, EpochMs, MessageStatus, NonEmpty, WireModel

# --------------------------------------------------------------------------- names and limits

TELEGRAM_TOKEN_REF = "telegram.botToken"
PAIRING_TTL_DEFAULT_MS = 15 * 60_000
PAIRING_TTL_MIN_MS = 60_000
PAIRING_TTL_MAX_MS = 24 * 3_600_000
# Failed pairing attempts one Telegram user may make per window before being told to wait.
PAIRING_MAX_FAILURES = 5
PAIRING_WINDOW_MS = 10 * 60_000
# 10 characters from a 32-letter alphabet without look-alikes: 50 bits, single-use, expiring.
PAIRING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
PAIRING_CODE_LENGTH = 10


def telegram_token_refs(agent_key: str) -> list[str]:
    """Where an agent's bot token is looked up, first match wins (upstream's naming)."""
    return [f"{TELEGRAM_TOKEN_REF}.{agent_key}", TELEGRAM_TOKEN_REF]


def is_telegram_token_ref(ref: str) -> bool:
    return ref == TELEGRAM_TOKEN_REF or ref.startswith(TELEGRAM_TOKEN_REF + ".")


def token_hash(token: str | SecretStr) -> str:
    """SHA-256 hex of a high-entropy token: what a store keeps in place of the token."""
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    return hashlib.sha256(value.encode()).hexdigest()


def token_matches(presented: str | None, stored_hash: str) -> bool:
    """Whether a presented token hashes to the stored hash, compared in constant time."""
    if not presented:
        return False
    return hmac.compare_digest(token_hash(presented), stored_hash)


def new_webhook_secret() -> str:
    """Telegram's ``secret_token``: 1–256 characters of ``A-Za-z0-9_-``; 256 bits here."""
    return secrets.token_urlsafe(32)


def new_pairing_code() -> str:
    return "".join(secrets.choice(PAIRING_ALPHABET) for _ in range(PAIRING_CODE_LENGTH))


def normalize_pairing_code(text: str) -> str:
    return text.strip().upper()


def pairing_ttl_ms(requested: int | None) -> int:
    """Upstream's clamp: 15 minutes by default, between one minute and one day."""
    ttl = PAIRING_TTL_DEFAULT_MS if requested is None else requested
    return min(max(ttl, PAIRING_TTL_MIN_MS), PAIRING_TTL_MAX_MS)


def pairing_rate_limited(failures: int, window_started_at: int | None, now: int) -> bool:
    """Whether a user with ``failures`` failed attempts since ``window_started_at`` must wait."""
    if window_started_at is None or now - window_started_at >= PAIRING_WINDOW_MS:
        return False
    return failures >= PAIRING_MAX_FAILURES


def next_failure_window(started: int | None, failures: int, now: int) -> tuple[int, int]:
    """After one more failed attempt: the window it counts in (its start) and the failures in it."""
    if started is None or now - started >= PAIRING_WINDOW_MS:
        return now, 1
    return started, failures + 1


def telegram_conversation_id(bot_id: str, chat_id: str) -> str:
    """An unbound Telegram chat's conversation, as upstream names it."""
    return f"telegram:{bot_id}:{chat_id}"


def bound_conversation_id(agent_key: str, user: str) -> str:
    """A bound user's conversation with their agent (upstream: ``user-agent:{agentKey}:{user}``)."""
    return f"user-agent:{agent_key}:{user}"


def telegram_external_id(update_id: int) -> str:
    """The enqueue dedupe key of a Telegram update: a retried webhook enqueues once."""
    return f"tg-update:{update_id}"


# --------------------------------------------------------------------------- Telegram webhooks


class TelegramWebhook(WireModel):
    """An agent's webhook as ``factory telegram configure`` set it up."""

    agent_key: NonEmpty
    bot_id: NonEmpty
    secret_hash: NonEmpty
    bot_username: str | None = None
    url: str | None = None
    configured_at: EpochMs | None = None


class IngestResult(WireModel):
    """What recording a Telegram update did: first sight (maybe enqueued), a duplicate, or refused."""

    duplicate: bool
    message_id: str | None = None
    # Why its message could not be enqueued (an unknown or disabled agent…): a redelivery of the
    # same update cannot fix it, so nothing about it was kept.
    refused: str | None = None


class TelegramUpdateRecord(WireModel):
    """``ingestTelegramUpdate``: remember an update id, and enqueue its message in the same step."""

    bot_id: NonEmpty
    update_id: int = Field(ge=0)
    request: EnqueueRequest | None = None


# --------------------------------------------------------------------------- pairing and bindings

PairingStatus = Literal["pending", "used", "expired"]
PairingOutcome = Literal["paired", "unknown", "expired", "used", "rate_limited"]
BindingStatus = Literal["active", "revoked"]


class PairingCodeRequest(WireModel):
    code: NonEmpty
    agent_key: NonEmpty
    ttl_ms: int | None = Field(default=None, ge=1)
    consumer_user_id: str | None = None


class PairingCode(WireModel):
    code: str
    agent_key: str
    status: PairingStatus
    created_at: EpochMs
    expires_at: EpochMs
    consumer_user_id: str | None = None
    used_at: EpochMs | None = None
    telegram_user_id: str | None = None
    telegram_chat_id: str | None = None


class PairingAttempt(WireModel):
    """``/start CODE`` from a Telegram user, through one bot."""

    code: NonEmpty
    bot_id: NonEmpty
    telegram_user_id: NonEmpty
    telegram_chat_id: NonEmpty


class IdentityBinding(WireModel):
    binding_id: str
    agent_key: str
    bot_id: str
    telegram_user_id: str
    conversation_id: str
    status: BindingStatus
    source: Literal["telegram_pairing", "manual", "api"]
    bound_at: EpochMs
    telegram_chat_id: str | None = None
    consumer_user_id: str | None = None
    revoked_at: EpochMs | None = None


class PairingResult(WireModel):
    outcome: PairingOutcome
    agent_key: str | None = None
    binding: IdentityBinding | None = None


# --------------------------------------------------------------------------- app API


class AppToken(WireModel):
    """An app's bearer token, as stored: its hash, never the token."""

    token_id: NonEmpty
    name: NonEmpty
    token_hash: NonEmpty
    created_at: EpochMs
    revoked_at: EpochMs | None = None


class ConversationMessage(WireModel):
    """One message of a conversation as an app sees it: its status and, once done, the reply."""

    message_id: str
    status: MessageStatus
    text: str
    enqueued_at: EpochMs
    external_message_id: str | None = None
    reply: str | None = None
    finished_at: EpochMs | None = None
    last_error: str | None = None


# --------------------------------------------------------------------------- secrets


class SecretInfo(WireModel):
    """What ``factory secrets status`` shows: never a value."""

    secret_ref: str
    version: int
    updated_at: EpochMs
    # None: stored before encryption existed, waiting to be sealed.
    key_id: str | None = None


class StoredSecret(WireModel):
    """One stored version as it sits in the store: ciphertext (or a legacy plaintext) and its key id."""

    secret_ref: str
    version: int
    value: SecretStr
    key_id: str | None = None


# --------------------------------------------------------------------------- hydration


def hydration_refs(agent_key: str, profile_refs: list[str]) -> list[str]:
    """The secret names a worker's bundle resolves: the profile's, plus the agent's bot token names."""
    return list(dict.fromkeys([*profile_refs, *telegram_token_refs(agent_key)]))


def pick_telegram_token(agent_key: str, profile_refs: list[str], resolved: dict[str, SecretStr]) -> SecretStr | None:
    """The agent's bot token: ``telegram.botToken.<agentKey>``, else a token ref its profile lists,
    else the global ``telegram.botToken``."""
    per_agent, global_ref = telegram_token_refs(agent_key)
    order = [per_agent, *(r for r in profile_refs if is_telegram_token_ref(r)), global_ref]
    return next((resolved[ref] for ref in order if ref in resolved), None)
