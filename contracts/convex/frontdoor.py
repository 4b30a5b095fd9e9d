"""The ingress and secrets roles over the factory Convex module (a part of ConvexStore).

The key never leaves this process: values are sealed here before ``importSecret`` and opened here
after ``resolveSecrets`` / ``workerHydrationBundle`` (which carry ciphertext and key ids only).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from contracts import models
from contracts.bridge import bridge_secret_refs, resolve_bridge
from contracts.convex.client import as_int
from contracts.errors import AgentUnavailable, ConversationConflict, InvalidInput
from contracts.ingress import (
    AppToken,
    ConversationMessage,
    IdentityBinding,
    IngestResult,
    PairingAttempt,
    PairingCode,
    PairingCodeRequest,
    PairingResult,
    SecretInfo,
    StoredSecret,
    TelegramUpdateRecord,
    TelegramWebhook,
    hydration_refs,
    pick_telegram_token,
)
from contracts.models import to_wire
from contracts.secrets import Sealed, SecretBox, open_value, seal_new


def _opt(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class FrontDoorFunctions:
    """The ingress role (webhooks, pairing, bindings, app reads) and the secrets role, for a store
    that calls the module's functions (``ConvexStore``) and holds the key (``box``)."""

    box: SecretBox | None

    if TYPE_CHECKING:  # provided by the store this is mixed into (ConvexStore)

        async def _query(self, function: str, args: Mapping[str, Any] | None = None) -> Any: ...

        async def _mutation(self, function: str, args: Mapping[str, Any] | None = None, *, retry: bool) -> Any: ...

        async def now_ms(self) -> int: ...

    # ---------------------------------------------------------------- secrets

    def _open_all(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, SecretStr]:
        return {
            str(r["secretRef"]): open_value(self.box, str(r["secretRef"]), str(r["value"]), r.get("keyId"))
            for r in rows
        }

    async def import_secret(self, secret_ref: str, value: SecretStr) -> int:
        sealed = seal_new(self.box, secret_ref, value)
        args = {"secretRef": secret_ref, "value": sealed.value, "keyId": sealed.key_id}
        # Not retried: each call stores a new version.
        return as_int(await self._mutation("importSecret", args, retry=False), "version")

    async def resolve_secret(self, refs: Sequence[str]) -> tuple[str, SecretStr] | None:
        found = self._open_all(await self._query("resolveSecrets", {"refs": list(refs)}))
        return next(((ref, found[ref]) for ref in refs if ref in found), None)

    async def secret_status(self) -> list[SecretInfo]:
        return [SecretInfo.model_validate(r) for r in await self._query("secretStatus", {})]

    async def sealed_secrets(self) -> list[StoredSecret]:
        return [StoredSecret.model_validate(r) for r in await self._query("sealedSecrets", {})]

    async def reseal_secret(self, secret_ref: str, version: int, expect_key_id: str | None, sealed: Sealed) -> bool:
        args = _opt(secretRef=secret_ref, version=version, expectKeyId=expect_key_id)
        args.update(value=sealed.value, keyId=sealed.key_id)
        return bool(await self._mutation("resealSecret", args, retry=True))

    def open_bundle(self, value: dict[str, Any]) -> models.HydrationBundle:
        """The module's bundle carries sealed secrets; the worker's bundle carries them opened, and
        the agent's bridge resolved from them (the module cannot read a sealed value)."""
        sealed = value.pop("sealedSecrets", [])
        bundle = models.HydrationBundle.model_validate(value)
        all_opened = self._open_all(sealed)
        refs = hydration_refs(bundle.agent_key, bundle.profile.secrets_ref)
        opened = {ref: v for ref, v in all_opened.items() if ref in refs}
        token = pick_telegram_token(bundle.agent_key, bundle.profile.secrets_ref, opened)
        update: dict[str, Any] = {"secrets": opened, "telegram_bot_token": token}
        config = bundle.profile.bridge_config
        if config is not None and bundle.profile.has_bridge:
            bridge_refs = set(bridge_secret_refs(bundle.agent_key, config))
            found = {ref: v.get_secret_value() for ref, v in all_opened.items() if ref in bridge_refs}
            update["bridge"] = resolve_bridge(bundle.agent_key, config, found)
        return bundle.model_copy(update=update)

    # ---------------------------------------------------------------- app tokens

    async def create_app_token(self, token: AppToken) -> AppToken:
        return AppToken.model_validate(await self._mutation("createAppToken", to_wire(token), retry=True))

    async def find_app_token(self, token_hash: str) -> AppToken | None:
        value = await self._query("findAppToken", {"tokenHash": token_hash})
        return None if value is None else AppToken.model_validate(value)

    async def revoke_app_token(self, token_id: str) -> bool:
        return bool(await self._mutation("revokeAppToken", {"tokenId": token_id}, retry=True))

    async def list_app_tokens(self) -> list[AppToken]:
        return [AppToken.model_validate(t) for t in await self._query("listAppTokens", {})]

    # ---------------------------------------------------------------- the front door

    async def ingest_telegram_updates(self, records: Sequence[TelegramUpdateRecord]) -> list[IngestResult]:
        out: list[IngestResult] = []
        for record in records:  # one mutation each: Convex commits each on its own anyway
            try:
                # Safe to repeat: a seen update id changes nothing.
                value = await self._mutation("ingestTelegramUpdate", to_wire(record), retry=True)
            except (AgentUnavailable, ConversationConflict, InvalidInput) as exc:
                out.append(IngestResult(duplicate=False, refused=str(exc)))
            else:
                out.append(IngestResult.model_validate(value))
        return out

    async def set_telegram_webhook(self, webhook: TelegramWebhook) -> TelegramWebhook:
        value = await self._mutation("setTelegramWebhook", {"webhook": to_wire(webhook)}, retry=True)
        return TelegramWebhook.model_validate(value)

    async def get_telegram_webhook(self, agent_key: str) -> TelegramWebhook | None:
        value = await self._query("getTelegramWebhook", {"agentKey": agent_key})
        return None if value is None else TelegramWebhook.model_validate(value)

    async def find_telegram_webhook(self, secret_hash: str) -> TelegramWebhook | None:
        value = await self._query("findTelegramWebhook", {"secretHash": secret_hash})
        return None if value is None else TelegramWebhook.model_validate(value)

    async def create_pairing_code(self, request: PairingCodeRequest) -> PairingCode:
        value = await self._mutation("createPairingCode", to_wire(request), retry=False)
        return PairingCode.model_validate(value)

    async def get_pairing_code(self, code: str) -> PairingCode | None:
        value = await self._query("getPairingCode", {"code": code, "now": await self.now_ms()})
        return None if value is None else PairingCode.model_validate(value)

    async def consume_pairing_code(self, attempt: PairingAttempt) -> PairingResult:
        # A repeated /start from the same user reports the pairing it made: safe to retry.
        value = await self._mutation("consumePairingCode", to_wire(attempt), retry=True)
        return PairingResult.model_validate(value)

    async def resolve_binding(self, bot_id: str, telegram_user_id: str) -> IdentityBinding | None:
        value = await self._query("resolveBinding", {"botId": bot_id, "telegramUserId": telegram_user_id})
        return None if value is None else IdentityBinding.model_validate(value)

    async def list_bindings(self, agent_key: str | None = None, include_revoked: bool = False) -> list[IdentityBinding]:
        args = _opt(agentKey=agent_key, includeRevoked=include_revoked)
        return [IdentityBinding.model_validate(b) for b in await self._query("listBindings", args)]

    async def revoke_binding(self, binding_id: str) -> bool:
        return bool(await self._mutation("revokeBinding", {"bindingId": binding_id}, retry=True))

    async def conversation_messages(self, conversation_id: str, limit: int = 100) -> list[ConversationMessage]:
        value = await self._query("conversationMessages", {"conversationId": conversation_id, "limit": limit})
        return [ConversationMessage.model_validate(m) for m in value]
