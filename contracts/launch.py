"""The environment a launched worker reads: one typed allow-list, rendered by every provider.

This is the only place the variables a launched worker reads are spelled. The worker's settings
(``factory/settings.py``) take their names from :data:`ENV`; the composition root builds one
:class:`WorkerEnvironment` per launch; each provider renders it into its platform's form (a Fly
machine's env, a droplet's env file, a local process's environment). Nothing outside this list
reaches a launched worker: no credentials the launching process happens to hold.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# Field name → environment variable. The worker's settings read these same names.
ENV: dict[str, str] = {
    "worker_id": "FACTORY_WORKER_ID",
    "launch_id": "FACTORY_LAUNCH_ID",
    "provider": "FACTORY_WORKER_PROVIDER",
    "machine_id": "FACTORY_MACHINE_ID",
    "store": "FACTORY_STORE",
    "sqlite_synchronous": "FACTORY_SQLITE_SYNCHRONOUS",
    "convex_namespace": "FACTORY_CONVEX_NAMESPACE",
    "convex_auth_token": "CONVEX_AUTH_TOKEN",
    "secrets_key": "FACTORY_SECRETS_KEY",
    "conversation_id": "FACTORY_CONVERSATION",
    "sticky": "FACTORY_STICKY",
    "idle_exit_s": "FACTORY_IDLE_EXIT_S",
    "grace_s": "FACTORY_GRACE_S",
    "max_outage_s": "FACTORY_MAX_OUTAGE_S",
    "gateway_url": "OPENCLAW_GATEWAY_URL",
    "gateway_token": "OPENCLAW_GATEWAY_TOKEN",
    "openclaw_state_dir": "FACTORY_OPENCLAW_STATE_DIR",
    "telegram_api_base": "TELEGRAM_API_BASE",
    "log_level": "FACTORY_LOG_LEVEL",
    "log_format": "FACTORY_LOG_FORMAT",
    "command": "FACTORY_COMMAND",
    "account_id": "ACCOUNT_ID",
    "service_token": "SERVICE_TOKEN",
}


class WorkerEnvironment(BaseModel):
    """Everything one launched worker is told, and nothing else. Unset fields are not rendered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Who it is (the reconciler names every launch before it asks the provider).
    worker_id: str = Field(min_length=1)
    launch_id: str = Field(min_length=1)
    # Set by the provider that starts it.
    provider: str | None = None
    machine_id: str | None = None
    # Where the store is and how to open it.
    store: str = Field(min_length=1)
    sqlite_synchronous: Literal["FULL", "NORMAL"] | None = None
    convex_namespace: str | None = None
    convex_auth_token: SecretStr | None = None
    # Opens the secrets its hydration bundles carry (sealed at rest; see contracts.secrets).
    secrets_key: SecretStr | None = None
    # How it behaves.
    conversation_id: str | None = None
    # Unpinned: pin itself to the conversation of its first job.
    sticky: bool | None = None
    idle_exit_s: float | None = Field(None, gt=0)
    grace_s: float | None = Field(None, ge=0)
    # How long it waits out its gateway or store being unavailable before it exits (unset: forever).
    max_outage_s: float | None = Field(None, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] | None = None
    log_format: Literal["console", "json"] | None = None
    # Its gateway: local workers share this machine's; remote images start their own.
    gateway_url: str | None = None
    gateway_token: SecretStr | None = None
    # That gateway's state directory (local workers): where a pinned worker's snapshots come from.
    openclaw_state_dir: str | None = None
    # Where replies to Telegram go (the Bot API; a local fake in `factory run`).
    telegram_api_base: str | None = None
    # What the machine runs: a worker (unset) or one Mission Control account's runtime, which
    # opens its account with the service token.
    command: Literal["worker", "runtime"] | None = None
    account_id: str | None = None
    service_token: SecretStr | None = None

    def render(self, *, secrets: bool = True) -> dict[str, str]:
        """Name → value for every field that is set, secrets revealed: hand it to the platform
        and drop it; never log it. ``secrets=False`` leaves the secret fields out, for a platform
        that carries secrets its own way (Fly app secrets)."""
        out: dict[str, str] = {}
        for field, name in ENV.items():
            value = getattr(self, field)
            if value is None or (isinstance(value, SecretStr) and not secrets):
                continue
            if isinstance(value, SecretStr):
                out[name] = value.get_secret_value()
            elif isinstance(value, float):
                out[name] = f"{value:g}"
            else:
                out[name] = str(value)
        return out

    def secret_env(self) -> dict[str, str]:
        """Name → value of the secret fields that are set (revealed): what ``render(secrets=False)`` left out."""
        public = self.render(secrets=False)
        return {name: value for name, value in self.render().items() if name not in public}

    def secret_values(self) -> list[str]:
        """The secret values it carries, so a platform's error text echoing one can be masked."""
        return [value.get_secret_value() for field in ENV if isinstance(value := getattr(self, field), SecretStr)]
