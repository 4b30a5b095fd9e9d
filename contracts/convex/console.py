"""The operator console's reads and sign-in over the factory Convex module (a part of ConvexStore).

Settled messages are read a page at a time (the module bounds what one call reads); everything
else is one call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from contracts import models
from contracts.console import ConsoleSession, OperatorToken
from contracts.ingress import PairingCode
from contracts.models import to_wire

# Settled messages per call: each page reads whole message documents (texts up to 64 KiB).
SETTLED_PAGE = 500


class ConsoleFunctions:
    """The console role and the console's reads of the operator, agents and fleet roles, for a
    store that calls the module's functions (``ConvexStore``)."""

    if TYPE_CHECKING:  # provided by the store this is mixed into (ConvexStore)

        async def _query(self, function: str, args: Mapping[str, Any] | None = None) -> Any: ...

        async def _mutation(self, function: str, args: Mapping[str, Any] | None = None, *, retry: bool) -> Any: ...

        def _pages(self, function: str, args: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

        async def now_ms(self) -> int: ...

    # ---------------------------------------------------------------- operator views

    async def search_conversations(self, query: str = "", limit: int = 50) -> list[models.ConversationSummary]:
        rows = await self._query("searchConversations", {"query": query.strip(), "limit": limit})
        return [models.ConversationSummary.model_validate(r) for r in rows]

    async def conversation_records(self, conversation_id: str, limit: int = 100) -> list[models.MessageRecord]:
        rows = await self._query("conversationRecords", {"conversationId": conversation_id, "limit": limit})
        return [models.MessageRecord.model_validate(r) for r in rows]

    async def settled_since(self, since_ms: int, limit: int = 10_000) -> models.SettledWindow:
        now = await self.now_ms()
        limit = max(1, limit)
        samples: list[models.SettledSample] = []
        for status in ("done", "dead_letter"):
            samples += await self._settled(status, since_ms, limit + 1)
        samples.sort(key=lambda s: s.finished_at, reverse=True)
        return models.SettledWindow(since=since_ms, now=now, samples=samples[:limit], truncated=len(samples) > limit)

    async def _settled(
        self, status: Literal["done", "dead_letter"], since_ms: int, most: int
    ) -> list[models.SettledSample]:
        found: list[models.SettledSample] = []
        args = {"status": status, "since": since_ms, "numItems": SETTLED_PAGE}
        async for row in self._pages("settledPage", args):
            found.append(models.SettledSample.model_validate(row))
            if len(found) >= most:
                break
        return found

    # ---------------------------------------------------------------- agents, pairing codes, reconciles

    async def list_agent_profiles(self) -> list[models.AgentProfile]:
        return [models.AgentProfile.model_validate(p) for p in await self._query("listAgentProfiles", {})]

    async def list_pairing_codes(self, limit: int = 100) -> list[PairingCode]:
        rows = await self._query("listPairingCodes", {"limit": limit, "now": await self.now_ms()})
        return [PairingCode.model_validate(r) for r in rows]

    async def record_reconcile(self, record: models.ReconcileRecord) -> None:
        await self._mutation("recordReconcile", {"record": to_wire(record)}, retry=True)

    async def last_reconcile(self) -> models.ReconcileRecord | None:
        value = await self._query("lastReconcile", {})
        return None if value is None else models.ReconcileRecord.model_validate(value)

    # ---------------------------------------------------------------- operator tokens and sessions

    async def create_operator_token(self, token: OperatorToken) -> OperatorToken:
        # A retried create with the same token id returns the stored token: safe to repeat.
        return OperatorToken.model_validate(await self._mutation("createOperatorToken", to_wire(token), retry=True))

    async def find_operator_token(self, token_hash: str) -> OperatorToken | None:
        value = await self._query("findOperatorToken", {"tokenHash": token_hash})
        return None if value is None else OperatorToken.model_validate(value)

    async def list_operator_tokens(self) -> list[OperatorToken]:
        return [OperatorToken.model_validate(t) for t in await self._query("listOperatorTokens", {})]

    async def revoke_operator_token(self, token_id: str) -> bool:
        return bool(await self._mutation("revokeOperatorToken", {"tokenId": token_id}, retry=True))

    async def create_console_session(self, session: ConsoleSession) -> ConsoleSession:
        value = await self._mutation("createConsoleSession", to_wire(session), retry=True)
        return ConsoleSession.model_validate(value)

    async def find_console_session(self, session_hash: str) -> ConsoleSession | None:
        value = await self._query("findConsoleSession", {"sessionHash": session_hash, "now": await self.now_ms()})
        return None if value is None else ConsoleSession.model_validate(value)

    async def end_console_session(self, session_hash: str) -> bool:
        return bool(await self._mutation("endConsoleSession", {"sessionHash": session_hash}, retry=True))
