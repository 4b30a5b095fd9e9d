"""The ingress role: Telegram webhooks, pairing codes, identity bindings and the app API's reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from contracts.ingress import (
    ConversationMessage,
    IdentityBinding,
    IngestResult,
    PairingAttempt,
    PairingCode,
    PairingCodeRequest,
    PairingResult,
    TelegramUpdateRecord,
    TelegramWebhook,
)
from contracts.models import Conversation
from contracts.roles.base import StoreHandle


@runtime_checkable
class IngressStore(StoreHandle, Protocol):
    async def ingest_telegram_updates(self, records: Sequence[TelegramUpdateRecord]) -> list[IngestResult]:
        """For each record, in order: remember (bot, update id) and enqueue its message in one step;
        a seen update changes nothing; a message that cannot be enqueued is ``refused``, not kept.
        SQLite commits the batch at once (one fsync for many updates)."""
        ...

    async def set_telegram_webhook(self, webhook: TelegramWebhook) -> TelegramWebhook: ...

    async def get_telegram_webhook(self, agent_key: str) -> TelegramWebhook | None: ...

    async def find_telegram_webhook(self, secret_hash: str) -> TelegramWebhook | None:
        """The webhook whose secret token hashes to ``secret_hash`` (upstream's path has no agent key)."""
        ...

    async def create_pairing_code(self, request: PairingCodeRequest) -> PairingCode:
        """A pending single-use code; the agent must exist and be enabled."""
        ...

    async def get_pairing_code(self, code: str) -> PairingCode | None:
        """The code's status (an expired pending code reads as expired)."""
        ...

    async def consume_pairing_code(self, attempt: PairingAttempt) -> PairingResult:
        """Bind the Telegram user to the code's agent, once; failures count towards a rate limit."""
        ...

    async def resolve_binding(self, bot_id: str, telegram_user_id: str) -> IdentityBinding | None: ...

    async def list_bindings(
        self, agent_key: str | None = None, include_revoked: bool = False
    ) -> list[IdentityBinding]: ...

    async def revoke_binding(self, binding_id: str) -> bool: ...

    async def conversation_messages(self, conversation_id: str, limit: int = 100) -> list[ConversationMessage]:
        """The conversation's latest messages, oldest first, each with its status and reply."""
        ...

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> Conversation | None: ...
