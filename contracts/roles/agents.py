"""The agents role: agent profiles and the secrets they reference."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from contracts.models import AgentProfile
from contracts.roles.base import StoreHandle


@runtime_checkable
class AgentStore(StoreHandle, Protocol):
    async def upsert_agent_profile(self, profile: AgentProfile) -> AgentProfile: ...

    async def get_agent_profile(self, agent_key: str) -> AgentProfile | None: ...

    async def list_agent_profiles(self) -> list[AgentProfile]:
        """Every agent profile (the built-in ``default`` included), by key."""
        ...

    async def import_secret(self, secret_ref: str, value: SecretStr) -> int:
        """Store a new active version of a secret and return its version number."""
        ...
