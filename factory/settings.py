"""Settings, read once per process at the edge (the CLI) and passed down as plain values.

Environment names follow the upstream projects where they exist (``OPENCLAW_GATEWAY_URL``,
``OPENCLAW_GATEWAY_TOKEN``, ``FLY_API_TOKEN``, ``DIGITALOCEAN_TOKEN``); ours start with
``FACTORY_``. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar, cast

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.errors import InvalidInput

DEFAULT_STORE = ".factory/factory.db"
S = TypeVar("S", bound=BaseSettings)


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class StoreSettings(_Settings):
    """Where the shared state lives: a SQLite path (the default) or a Convex deployment URL."""

    store: str = Field(DEFAULT_STORE, validation_alias=AliasChoices("FACTORY_STORE", "store"))
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", validation_alias=AliasChoices("FACTORY_SQLITE_SYNCHRONOUS", "sqlite_synchronous")
    )
    convex_auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("CONVEX_AUTH_TOKEN", "convex_auth_token")
    )
    convex_deploy_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("CONVEX_DEPLOY_KEY", "convex_deploy_key")
    )
    convex_namespace: str = Field(
        "agentFactory", validation_alias=AliasChoices("FACTORY_CONVEX_NAMESPACE", "convex_namespace")
    )
    convex_compat: Literal["", "agent-factory-3.1"] = Field(
        "", validation_alias=AliasChoices("FACTORY_CONVEX_COMPAT", "convex_compat")
    )
    store_timeout_s: float = Field(
        20.0, gt=0, validation_alias=AliasChoices("FACTORY_STORE_TIMEOUT_S", "store_timeout_s")
    )

    @field_validator("store")
    @classmethod
    def _store_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a SQLite file path or a Convex URL (https://NAME.convex.cloud)")
        return value.strip()

    @property
    def is_convex(self) -> bool:
        return self.store.startswith(("http://", "https://"))


def load(cls: type[S], **overrides: object) -> S:
    """Build a settings object, turning a validation failure into one line naming the setting."""
    try:
        # Explicit values (CLI options) win over the environment; None means "not given".
        build = cast(Any, cls)
        return cast(S, build(**{k: v for k, v in overrides.items() if v is not None}))
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
