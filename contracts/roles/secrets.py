"""The secrets role: sealed secrets (status, rotation, lookup by name) and the app API's tokens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from contracts.ingress import AppToken, SecretInfo, StoredSecret
from contracts.roles.base import StoreHandle
from contracts.secrets import Sealed


@runtime_checkable
class SecretStore(StoreHandle, Protocol):
    async def import_secret(self, secret_ref: str, value: SecretStr) -> int:
        """Seal and store a new active version; returns its version number."""
        ...

    async def resolve_secret(self, refs: Sequence[str]) -> tuple[str, SecretStr] | None:
        """The first of ``refs`` with an active version, opened: (ref, value)."""
        ...

    async def secret_status(self) -> list[SecretInfo]:
        """Every secret's active version: name, version, updated-at, key id. Never a value."""
        ...

    async def sealed_secrets(self) -> list[StoredSecret]:
        """Every stored version as kept (ciphertext), for re-sealing under a new key."""
        ...

    async def reseal_secret(self, secret_ref: str, version: int, expect_key_id: str | None, sealed: Sealed) -> bool:
        """Swap one version's ciphertext if it still carries ``expect_key_id``."""
        ...

    async def create_app_token(self, token: AppToken) -> AppToken: ...

    async def find_app_token(self, token_hash: str) -> AppToken | None:
        """The live (unrevoked) token with this hash."""
        ...

    async def revoke_app_token(self, token_id: str) -> bool: ...

    async def list_app_tokens(self) -> list[AppToken]: ...
