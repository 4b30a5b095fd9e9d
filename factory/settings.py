"""Settings, read once per process at the edge (the CLI) and passed down as plain values.

Environment names follow the upstream projects where they exist (``OPENCLAW_GATEWAY_URL``,
``OPENCLAW_GATEWAY_TOKEN``, ``FLY_API_TOKEN``, ``DIGITALOCEAN_TOKEN``); ours start with
``FACTORY_``. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.errors import InvalidInput
from contracts.launch import ENV
from contracts.models import MachineRef, check_utf8
from contracts.rules import check_lease_ttl_ms
from contracts.urls import check_token_url

DEFAULT_STORE = ".factory/factory.db"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:18789"
ENV_LEASE_TTL = "FACTORY_LEASE_TTL_MS"
# The longest wait, timeout or window any setting may ask for: a week. Anything longer is a typo,
# and unbounded values overflow timers (an infinite timeout cannot be given to a socket).
MAX_SECONDS = 7 * 24 * 3600.0
S = TypeVar("S", bound=BaseSettings)
# "ftp:", "HTTPS:", "https:" … : a value that starts like a URL is treated as one, never as a file name.
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def store_location(value: str) -> str:
    """A SQLite path as given, or a Convex deployment URL normalised (``HTTPS://…`` → ``https://…``,
    ``.convex.site`` → ``.convex.cloud``); any other scheme, or a malformed URL, is refused."""
    value = check_utf8(value.strip())
    if not value:
        raise ValueError("must be a SQLite file path or a Convex URL (https://NAME.convex.cloud)")
    if not _SCHEME.match(value):
        return value
    scheme = value.split(":", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise ValueError(
            f"{value!r} is neither a SQLite file path nor a Convex URL: {scheme}:// is not supported; "
            f"use https://NAME.convex.cloud, or ./{value} for a file of that name"
        )
    from contracts.convex.client import normalize_url  # only Convex users load httpx

    try:
        return normalize_url(value)
    except InvalidInput as exc:
        raise ValueError(exc.problem) from None


class _Settings(BaseSettings):
    # No infinite or NaN floats: nobody means them, and timers overflow on them.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _utf8(cls, value: object) -> object:
        # An environment value holding bytes that are not UTF-8 can be neither stored nor sent.
        if isinstance(value, str):
            check_utf8(value)
        elif isinstance(value, SecretStr):
            check_utf8(value.get_secret_value())
        return value


class StoreSettings(_Settings):
    """Where the shared state lives: a SQLite path (the default) or a Convex deployment URL."""

    store: str = Field(DEFAULT_STORE, validation_alias=AliasChoices(ENV["store"], "store"))
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        "FULL", validation_alias=AliasChoices(ENV["sqlite_synchronous"], "sqlite_synchronous")
    )
    # Off: the embedded store only polls (no cross-process doorbell), e.g. when the processes
    # sharing the file run in separate network namespaces and cannot reach each other's sockets.
    sqlite_doorbell: bool = Field(True, validation_alias=AliasChoices("FACTORY_SQLITE_DOORBELL", "sqlite_doorbell"))
    convex_auth_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices(ENV["convex_auth_token"], "convex_auth_token")
    )
    convex_deploy_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("CONVEX_DEPLOY_KEY", "convex_deploy_key")
    )
    convex_namespace: str = Field(
        "agentFactory", validation_alias=AliasChoices(ENV["convex_namespace"], "convex_namespace")
    )
    convex_compat: Literal["", "agent-factory-3.1"] = Field(
        "", validation_alias=AliasChoices("FACTORY_CONVEX_COMPAT", "convex_compat")
    )
    store_timeout_s: float = Field(
        20.0, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_STORE_TIMEOUT_S", "store_timeout_s")
    )
    # The lease length the store hands out. The store keeps it (SQLite: in the file, for every
    # process; Convex: the deployment's own FACTORY_LEASE_TTL_MS), so workers never read it.
    lease_ttl_ms: int | None = Field(None, validation_alias=AliasChoices(ENV_LEASE_TTL, "lease_ttl_ms"))
    # The AES-256-GCM key secrets are sealed with (`factory secrets keygen`), and keys still
    # accepted for opening while a rotation is under way (comma-separated).
    secrets_key: SecretStr | None = Field(None, validation_alias=AliasChoices(ENV["secrets_key"], "secrets_key"))
    secrets_previous_keys: SecretStr | None = Field(
        None, validation_alias=AliasChoices("FACTORY_SECRETS_PREVIOUS_KEYS", "secrets_previous_keys")
    )

    @field_validator("lease_ttl_ms")
    @classmethod
    def _lease_ttl(cls, value: int | None) -> int | None:
        try:
            return None if value is None else check_lease_ttl_ms(value)
        except ValueError as exc:  # the error line names the variable once
            raise ValueError(str(exc).removeprefix(f"{ENV_LEASE_TTL}: ")) from None

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        return store_location(value)

    @model_validator(mode="after")
    def _token_over_tls(self) -> Self:
        if self.is_convex and (self.convex_auth_token is not None or self.convex_deploy_key is not None):
            try:
                check_token_url(self.store)
            except ValueError as exc:
                raise InvalidInput(ENV["store"], str(exc)) from None
        return self

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
        raise settings_error(cls, exc) from None


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Field name → the environment variable that sets it (the first of its aliases)."""
    names: dict[str, str] = {}
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
            names[field] = alias.choices[0]
    return names


def settings_error(cls: type[BaseSettings], exc: ValidationError) -> InvalidInput:
    """One line naming the environment variable behind the first bad field of ``cls`` (or of a
    config built from it, whose fields share its names)."""
    problem = InvalidInput.from_validation(exc)
    loc = exc.errors()[0]["loc"]
    return InvalidInput(env_names(cls).get(str(loc[0]), problem.field) if loc else problem.field, problem.problem)


class BridgeEnvSettings(_Settings):
    """The last place an agent's bridge settings are looked up: the worker's environment (the
    names upstream's worker reads)."""

    base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENCLAW_AGENT_BRIDGE_BASE_URL", "AGENT_BRIDGE_BASE_URL", "base_url")
    )
    service_id: str | None = Field(
        None, validation_alias=AliasChoices("OPENCLAW_SERVICE_ID", "AGENT_BRIDGE_SERVICE_ID", "service_id")
    )
    service_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("OPENCLAW_SERVICE_KEY", "AGENT_BRIDGE_SERVICE_KEY", "service_key")
    )
    app_key: str | None = Field(
        None,
        validation_alias=AliasChoices("OPENCLAW_AGENT_APP", "OPENCLAW_APP_KEY", "AGENT_BRIDGE_APP_KEY", "app_key"),
    )
    timeout_s: float = Field(30.0, gt=0, validation_alias=AliasChoices("FACTORY_BRIDGE_TIMEOUT_S", "timeout_s"))

    def wire(self) -> dict[str, str | None]:
        """By wire field, as contracts.bridge.complete_bridge takes them."""
        return {
            "baseUrl": self.base_url,
            "serviceId": self.service_id,
            "serviceKey": self.service_key.get_secret_value() if self.service_key else None,
            "appKey": self.app_key,
        }


class WorkerSettings(_Settings):
    """``factory worker run``: who this worker is, where its gateway is, how it behaves."""

    worker_id: str | None = Field(None, validation_alias=AliasChoices(ENV["worker_id"], "worker_id"))
    provider: str = Field("local", validation_alias=AliasChoices(ENV["provider"], "provider"))
    launch_id: str | None = Field(None, validation_alias=AliasChoices(ENV["launch_id"], "launch_id"))
    # Fly sets FLY_MACHINE_ID / FLY_APP_NAME / FLY_REGION inside every machine.
    machine_id: str | None = Field(
        None, validation_alias=AliasChoices(ENV["machine_id"], "FLY_MACHINE_ID", "machine_id")
    )
    machine_app: str | None = Field(None, validation_alias=AliasChoices("FLY_APP_NAME", "machine_app"))
    machine_region: str | None = Field(None, validation_alias=AliasChoices("FLY_REGION", "machine_region"))
    conversation_id: str | None = Field(
        None, validation_alias=AliasChoices(ENV["conversation_id"], "OPENCLAW_CONVERSATION_ID", "conversation_id")
    )
    sticky: bool = Field(False, validation_alias=AliasChoices(ENV["sticky"], "sticky"))
    workspace_id: str = Field("default", validation_alias=AliasChoices("FACTORY_WORKSPACE_ID", "workspace_id"))

    gateway_url: str = Field(DEFAULT_GATEWAY_URL, validation_alias=AliasChoices(ENV["gateway_url"], "gateway_url"))
    gateway_token: SecretStr | None = Field(None, validation_alias=AliasChoices(ENV["gateway_token"], "gateway_token"))
    delivery: Literal["ws", "http"] = Field("ws", validation_alias=AliasChoices("FACTORY_DELIVERY", "delivery"))
    delivery_timeout_s: float = Field(
        300.0, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_DELIVERY_TIMEOUT_S", "delivery_timeout_s")
    )
    telegram_api_base: str = Field(
        "https://api.telegram.org", validation_alias=AliasChoices(ENV["telegram_api_base"], "telegram_api_base")
    )

    # Where Telegram attachments are downloaded for the agent (a folder its gateway can read).
    attachments_dir: str = Field(
        ".factory/attachments", validation_alias=AliasChoices("FACTORY_ATTACHMENTS_DIR", "attachments_dir")
    )

    poll_s: float = Field(1.0, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_POLL_S", "poll_s"))
    idle_exit_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices(ENV["idle_exit_s"], "idle_exit_s")
    )
    grace_s: float = Field(30.0, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices(ENV["grace_s"], "grace_s"))
    # How long an outage of the gateway or the store is waited out before the worker gives up and
    # exits (non-zero); None: as long as it lasts, what a fleet worker wants.
    max_outage_s: float | None = Field(
        None,
        gt=0,
        le=MAX_SECONDS,
        allow_inf_nan=False,
        validation_alias=AliasChoices(ENV["max_outage_s"], "max_outage_s"),
    )
    # Set by the worker image, which starts the gateway and the worker together.
    gateway_wait_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_GATEWAY_WAIT_S", "gateway_wait_s")
    )
    health_host: str = Field("127.0.0.1", validation_alias=AliasChoices("FACTORY_HEALTH_HOST", "health_host"))
    health_port: int | None = Field(
        None, ge=0, le=65535, validation_alias=AliasChoices("FACTORY_HEALTH_PORT", "health_port")
    )

    # The OpenClaw state directory of this machine's gateway: set, a pinned worker restores and
    # snapshots its agent there, and agents' bridge settings are kept beside it.
    openclaw_state_dir: Path | None = Field(
        None, validation_alias=AliasChoices(ENV["openclaw_state_dir"], "OPENCLAW_STATE_DIR", "openclaw_state_dir")
    )
    snapshot_keep: int = Field(3, ge=1, validation_alias=AliasChoices("FACTORY_SNAPSHOT_KEEP", "snapshot_keep"))
    snapshot_max_mb: int = Field(512, ge=1, validation_alias=AliasChoices("FACTORY_SNAPSHOT_MAX_MB", "snapshot_max_mb"))
    snapshot_timeout_s: float = Field(
        300.0, gt=0, validation_alias=AliasChoices("FACTORY_SNAPSHOT_TIMEOUT_S", "snapshot_timeout_s")
    )
    snapshot_when_idle: bool = Field(
        True, validation_alias=AliasChoices("FACTORY_SNAPSHOT_WHEN_IDLE", "snapshot_when_idle")
    )
    # Seed a session the gateway does not have from the stored history, on its first turn.
    seed_history: bool = Field(True, validation_alias=AliasChoices("FACTORY_SEED_HISTORY", "seed_history"))

    @field_validator("gateway_url")
    @classmethod
    def _gateway_url(cls, value: str) -> str:
        return check_gateway_url(value)

    @field_validator("telegram_api_base")
    @classmethod
    def _telegram_base(cls, value: str) -> str:
        # The bot token travels in the path of every Bot API call.
        return check_token_url(value).rstrip("/")

    @property
    def attachments_path(self) -> Path:
        return Path(self.attachments_dir).expanduser().absolute()

    @property
    def bridge_dir(self) -> Path | None:
        """Agents' resolved bridge settings: beside the state, outside what snapshots archive."""
        return None if self.openclaw_state_dir is None else self.openclaw_state_dir / "factory" / "bridge"

    @property
    def machine_ref(self) -> MachineRef | None:
        if not self.machine_id:
            return None
        return MachineRef(machine_id=self.machine_id, app_name=self.machine_app, region=self.machine_region)

    def require_gateway_token(self) -> SecretStr:
        if self.gateway_token is None or not self.gateway_token.get_secret_value():
            raise InvalidInput(
                "OPENCLAW_GATEWAY_TOKEN", "is not set; set it to the gateway's auth token (gateway.auth.token)"
            )
        return self.gateway_token


def check_gateway_url(value: str) -> str:
    """An OpenClaw gateway URL that can work: http(s) or ws(s), a host, a port if any in range."""
    problem = "must be a URL such as http://127.0.0.1:18789"
    if not value.startswith(("http://", "https://", "ws://", "wss://")):
        raise ValueError(problem)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check (out of range, not a number)
    except ValueError as exc:
        raise ValueError(f"{problem} ({exc})") from None
    if not parts.hostname:
        raise ValueError(f"{problem} (no host)")
    return value.rstrip("/")


class ServeSettings(_Settings):
    """``factory serve``: where it listens and how the Telegram webhook treats unknown users."""

    host: str = Field("127.0.0.1", validation_alias=AliasChoices("FACTORY_SERVE_HOST", "host"))
    port: int = Field(8080, ge=0, le=65535, validation_alias=AliasChoices("FACTORY_SERVE_PORT", "port"))
    grace_s: float = Field(10.0, ge=0, validation_alias=AliasChoices("FACTORY_SERVE_GRACE_S", "grace_s"))
    require_binding_for_telegram: bool = Field(
        False, validation_alias=AliasChoices("FACTORY_TELEGRAM_REQUIRE_BINDING", "require_binding_for_telegram")
    )
    fallback_agent_key: str | None = Field(
        None, validation_alias=AliasChoices("FACTORY_TELEGRAM_FALLBACK_AGENT", "fallback_agent_key")
    )
    max_body_bytes: int = Field(
        1_000_000, ge=1024, validation_alias=AliasChoices("FACTORY_SERVE_MAX_BODY_BYTES", "max_body_bytes")
    )
    webhook_cache_s: float = Field(
        5.0, ge=0, validation_alias=AliasChoices("FACTORY_SERVE_WEBHOOK_CACHE_S", "webhook_cache_s")
    )
    telegram_api_base: str = Field(
        "https://api.telegram.org", validation_alias=AliasChoices("TELEGRAM_API_BASE", "telegram_api_base")
    )
    # How often the push dispatcher inside `factory serve` runs (0: not at all, leave it to cron).
    push_dispatch_s: float = Field(
        30.0, ge=0, le=3_600, validation_alias=AliasChoices("FACTORY_SERVE_PUSH_DISPATCH_S", "push_dispatch_s")
    )


class ConsoleSettings(_Settings):
    """The operator console under ``factory serve``'s /console: how operators sign in."""

    auth: Literal["token", "header"] = Field("token", validation_alias=AliasChoices("FACTORY_CONSOLE_AUTH", "auth"))
    trusted_header: str | None = Field(
        None, validation_alias=AliasChoices("FACTORY_CONSOLE_TRUSTED_HEADER", "trusted_header")
    )
    admins: str = Field("", validation_alias=AliasChoices("FACTORY_CONSOLE_ADMINS", "admins"))
    session_ttl_s: int = Field(
        43_200, ge=60, le=30 * 86_400, validation_alias=AliasChoices("FACTORY_CONSOLE_SESSION_TTL_S", "session_ttl_s")
    )
    refresh_s: float = Field(3.0, gt=0, le=600, validation_alias=AliasChoices("FACTORY_CONSOLE_REFRESH_S", "refresh_s"))


class LogSettings(_Settings):
    level: Literal["debug", "info", "warning", "error"] | None = Field(
        None, validation_alias=AliasChoices(ENV["log_level"], "level")
    )
    format: Literal["console", "json"] = Field("console", validation_alias=AliasChoices(ENV["log_format"], "format"))


class ScaleSettings(_Settings):
    """``factory reconcile``: which provider, and the scaling policy (FACTORY_SCALE_*).

    A policy setting left unset takes the shipped default for the provider
    (``autoscaler.policy.shipped``): the values ``make bench`` chose from its sweep.
    """

    provider: Literal["local", "fly", "digitalocean"] = Field(
        "local", validation_alias=AliasChoices("FACTORY_PROVIDER", "provider")
    )
    mode: Literal["affinity", "pool"] | None = Field(None, validation_alias=AliasChoices("FACTORY_SCALE_MODE", "mode"))
    conversations_per_worker: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("FACTORY_SCALE_CONVERSATIONS_PER_WORKER", "conversations_per_worker")
    )
    min_workers: int | None = Field(None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_MIN", "min_workers"))
    max_workers: int | None = Field(None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_MAX", "max_workers"))
    max_step: int | None = Field(None, ge=1, validation_alias=AliasChoices("FACTORY_SCALE_MAX_STEP", "max_step"))
    scale_down_window_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_DOWN_WINDOW_S", "scale_down_window_s")
    )
    idle_timeout_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_IDLE_TIMEOUT_S", "idle_timeout_s")
    )
    budget_machines: int | None = Field(
        None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_BUDGET", "budget_machines")
    )
    launch_timeout_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_LAUNCH_TIMEOUT_S", "launch_timeout_s")
    )
    launch_hedge_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_LAUNCH_HEDGE_S", "launch_hedge_s")
    )
    drain_deadline_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_DRAIN_DEADLINE_S", "drain_deadline_s")
    )
    pool_size: int | None = Field(None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_POOL_SIZE", "pool_size"))
    pool_hold_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_POOL_HOLD_S", "pool_hold_s")
    )
    pool_min: int | None = Field(None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_POOL_MIN", "pool_min"))
    pool_prefill: bool | None = Field(None, validation_alias=AliasChoices("FACTORY_SCALE_POOL_PREFILL", "pool_prefill"))
    suspend_idle: bool | None = Field(None, validation_alias=AliasChoices("FACTORY_SCALE_SUSPEND_IDLE", "suspend_idle"))
    sticky_workers: bool | None = Field(None, validation_alias=AliasChoices("FACTORY_SCALE_STICKY", "sticky_workers"))
    pin_pool_starts: bool | None = Field(
        None, validation_alias=AliasChoices("FACTORY_SCALE_PIN_POOL_STARTS", "pin_pool_starts")
    )
    suspend_keep_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_SUSPEND_KEEP_S", "suspend_keep_s")
    )
    spare_workers: int | None = Field(None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_SPARE", "spare_workers"))
    spare_min_arrivals: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("FACTORY_SCALE_SPARE_MIN_ARRIVALS", "spare_min_arrivals")
    )
    spare_hold_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_SPARE_HOLD_S", "spare_hold_s")
    )
    keep_warm_workers: int | None = Field(
        None, ge=0, validation_alias=AliasChoices("FACTORY_SCALE_KEEP_WARM", "keep_warm_workers")
    )
    keep_warm_gap_factor: float | None = Field(
        None, gt=0, validation_alias=AliasChoices("FACTORY_SCALE_KEEP_WARM_GAP_FACTOR", "keep_warm_gap_factor")
    )
    keep_warm_max_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_KEEP_WARM_MAX_S", "keep_warm_max_s")
    )
    cold_start_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_COLD_START_S", "cold_start_s")
    )
    warm_start_s: float | None = Field(
        None, ge=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_SCALE_WARM_START_S", "warm_start_s")
    )
    # The store as launched workers should reach it (default: FACTORY_STORE itself).
    worker_store: str | None = Field(None, validation_alias=AliasChoices("FACTORY_WORKER_STORE", "worker_store"))
    # Gateway settings handed to local workers (remote machines start their own gateway).
    gateway_url: str | None = Field(None, validation_alias=AliasChoices(ENV["gateway_url"], "gateway_url"))
    gateway_token: SecretStr | None = Field(None, validation_alias=AliasChoices(ENV["gateway_token"], "gateway_token"))
    # That gateway's state directory: local pinned workers snapshot their agent from it.
    gateway_state_dir: Path | None = Field(
        None, validation_alias=AliasChoices(ENV["openclaw_state_dir"], "gateway_state_dir")
    )

    @field_validator("gateway_url")
    @classmethod
    def _gateway_url(cls, value: str | None) -> str | None:
        return None if value is None else check_gateway_url(value)

    @field_validator("worker_store")
    @classmethod
    def _worker_store(cls, value: str | None) -> str | None:
        return None if value is None else store_location(value)


class FlySettings(_Settings):
    api_token: SecretStr | None = Field(None, validation_alias=AliasChoices("FLY_API_TOKEN", "api_token"))
    app: str | None = Field(None, validation_alias=AliasChoices("FLY_APP", "app"))
    image: str | None = Field(None, validation_alias=AliasChoices("FLY_IMAGE", "image"))
    region: str | None = Field(None, validation_alias=AliasChoices("FLY_REGION", "region"))
    cpu_kind: Literal["shared", "performance"] = Field(
        "shared", validation_alias=AliasChoices("FLY_CPU_KIND", "cpu_kind")
    )
    cpus: int = Field(1, ge=1, validation_alias=AliasChoices("FLY_CPUS", "cpus"))
    memory_mb: int = Field(2048, ge=256, validation_alias=AliasChoices("FLY_MEMORY_MB", "memory_mb"))
    stop_timeout_s: int = Field(
        300, ge=1, le=300, validation_alias=AliasChoices("FLY_STOP_TIMEOUT_S", "stop_timeout_s")
    )
    api_base_url: str = Field(
        "https://api.machines.dev", validation_alias=AliasChoices("FLY_API_BASE_URL", "api_base_url")
    )


class DigitalOceanSettings(_Settings):
    token: SecretStr | None = Field(None, validation_alias=AliasChoices("DIGITALOCEAN_TOKEN", "token"))
    worker_image: str | None = Field(None, validation_alias=AliasChoices("DIGITALOCEAN_WORKER_IMAGE", "worker_image"))
    region: str = Field("nyc3", validation_alias=AliasChoices("DIGITALOCEAN_REGION", "region"))
    size: str = Field("s-1vcpu-2gb", validation_alias=AliasChoices("DIGITALOCEAN_SIZE", "size"))
    image: str = Field("docker-20-04", validation_alias=AliasChoices("DIGITALOCEAN_IMAGE", "image"))
    ssh_key_ids: str = Field("", validation_alias=AliasChoices("DIGITALOCEAN_SSH_KEY_IDS", "ssh_key_ids"))
    api_base_url: str = Field(
        "https://api.digitalocean.com/v2/", validation_alias=AliasChoices("DIGITALOCEAN_API_BASE_URL", "api_base_url")
    )
    cloud_init_template: str | None = Field(
        None, validation_alias=AliasChoices("DIGITALOCEAN_CLOUD_INIT_TEMPLATE", "cloud_init_template")
    )

    @field_validator("ssh_key_ids")
    @classmethod
    def _numeric_ids(cls, value: str) -> str:
        for key in (k.strip() for k in value.split(",")):
            if key and not re.fullmatch(r"[0-9]+", key):
                raise ValueError(f"{key!r} is not a key id: list the numeric ids of your SSH keys, comma-separated")
        return value

    @property
    def ssh_keys(self) -> tuple[int, ...]:
        return tuple(int(k) for k in self.ssh_key_ids.split(",") if k.strip())


class RunSettings(_Settings):
    """``factory run``: which model the demo gateway uses, read from the usual provider variables.

    OPENAI_API_KEY wins over ANTHROPIC_API_KEY; with neither, the built-in offline stub answers.
    FACTORY_RUN_MODEL names the hosted model (``gpt-5.4-mini`` or ``openai/gpt-5.4-mini``).
    """

    openai_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key"))
    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("ANTHROPIC_API_KEY", "anthropic_api_key")
    )
    model: str | None = Field(None, validation_alias=AliasChoices("FACTORY_RUN_MODEL", "model"))
    timeout_s: float = Field(
        480.0, gt=0, le=MAX_SECONDS, validation_alias=AliasChoices("FACTORY_RUN_TIMEOUT_S", "timeout_s")
    )

    @field_validator("openai_api_key", "anthropic_api_key", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        # `OPENAI_API_KEY= make run` means "no key", not "an empty key the provider will reject".
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None


class RuntimeSettings(_Settings):
    """``factory runtime``: the seed's environment names (Mission Control's Module 13) work as they are."""

    account_id: str | None = Field(
        None, validation_alias=AliasChoices("ACCOUNT_ID", "FACTORY_ACCOUNT_ID", "account_id")
    )
    # The store: the seed's CONVEX_URL, when FACTORY_STORE is not set.
    store: str | None = Field(None, validation_alias=AliasChoices("CONVEX_URL", "store"))
    service_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SERVICE_TOKEN", "FACTORY_SERVICE_TOKEN", "service_token")
    )
    health_host: str = Field("127.0.0.1", validation_alias=AliasChoices("HEALTH_HOST", "health_host"))
    health_port: int = Field(3001, ge=0, le=65535, validation_alias=AliasChoices("HEALTH_PORT", "health_port"))
    # Milliseconds, as the seed reads them.
    delivery_interval: int = Field(
        5000, ge=10, le=int(MAX_SECONDS * 1000), validation_alias=AliasChoices("DELIVERY_INTERVAL", "delivery_interval")
    )
    health_check_interval: int = Field(
        60000,
        ge=10,
        le=int(MAX_SECONDS * 1000),
        validation_alias=AliasChoices("HEALTH_CHECK_INTERVAL", "health_check_interval"),
    )
    droplet_id: str | None = Field(None, validation_alias=AliasChoices("DROPLET_ID", "droplet_id"))
    droplet_ip: str | None = Field(None, validation_alias=AliasChoices("DROPLET_IP", "droplet_ip"))

    def require_token(self) -> SecretStr:
        if self.service_token is None or not self.service_token.get_secret_value():
            raise InvalidInput("SERVICE_TOKEN", "is not set; issue one with `factory account token ACCOUNT`")
        return self.service_token
