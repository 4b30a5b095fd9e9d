"""The console role: the operator console's sign-in (operator tokens, sessions) and its own lists."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.console import ConsoleSession, OperatorToken
from contracts.ingress import PairingCode
from contracts.roles.base import StoreHandle


@runtime_checkable
class ConsoleStore(StoreHandle, Protocol):
    async def create_operator_token(self, token: OperatorToken) -> OperatorToken: ...

    async def find_operator_token(self, token_hash: str) -> OperatorToken | None:
        """The live (unrevoked) operator token with this hash."""
        ...

    async def list_operator_tokens(self) -> list[OperatorToken]: ...

    async def revoke_operator_token(self, token_id: str) -> bool:
        """Revoke a token; every session opened with it ends with it."""
        ...

    async def create_console_session(self, session: ConsoleSession) -> ConsoleSession:
        """Keep a new session (sessions ended or expired long ago are pruned on the way)."""
        ...

    async def find_console_session(self, session_hash: str) -> ConsoleSession | None:
        """The live session with this hash: not ended, not expired, its token not revoked."""
        ...

    async def end_console_session(self, session_hash: str) -> bool: ...

    async def list_pairing_codes(self, limit: int = 100) -> list[PairingCode]:
        """The newest pairing codes, newest first (an expired pending code reads as expired)."""
        ...
