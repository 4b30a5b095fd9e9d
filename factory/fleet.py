"""Composition of the autoscaler: settings → policy, provider and what launched workers run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog
from pydantic import SecretStr, ValidationError

from autoscaler.errors import ProviderConfigError
from autoscaler.policy import RECONFIGURING_PROVIDERS, SUSPENDING_PROVIDERS, ScalingPolicy, shipped
from autoscaler.provider import LaunchSpec, Provider
from autoscaler.reconciler import Reconciler, SpecFactory
from contracts.errors import InvalidInput
from contracts.launch import WorkerEnvironment
from contracts.models import ReconcileRecord
from contracts.urls import check_token_url
from factory.settings import (
    DEFAULT_GATEWAY_URL,
    DigitalOceanSettings,
    FlySettings,
    LogSettings,
    ScaleSettings,
    StoreSettings,
    load,
    settings_error,
)
from factory.stores import open_full_store
from worker.errors import DeliveryAuthError, DeliveryError

_log = structlog.get_logger("factory.fleet")


def scaling_policy(settings: ScaleSettings) -> ScalingPolicy:
    """The policy the settings describe (FACTORY_SCALE_*); what they leave out takes the shipped
    default for the provider."""
    try:
        policy = shipped(
            settings.provider, **settings.model_dump(include=set(ScalingPolicy.model_fields), exclude_none=True)
        )
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    if policy.suspend_idle and settings.provider not in SUSPENDING_PROVIDERS:
        raise InvalidInput(
            "FACTORY_SCALE_SUSPEND_IDLE", f"{settings.provider} cannot suspend machines (only fly can); unset it"
        )
    if policy.pin_pool_starts and settings.provider not in RECONFIGURING_PROVIDERS:
        raise InvalidInput(
            "FACTORY_SCALE_PIN_POOL_STARTS",
            f"{settings.provider} cannot give a stopped machine a conversation (only fly can); unset it",
        )
    return policy


def _required(value: str | SecretStr | None, setting: str, hint: str) -> str:
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text or not text.strip():
        raise ProviderConfigError(setting, f"is not set; {hint}")
    return text.strip()


def make_provider(name: str, store: StoreSettings, *, keep_stopped: bool = False, runtimes: bool = False) -> Provider:
    """The provider ``name`` configured from its settings; a missing setting is one clear error.

    ``keep_stopped``: the policy keeps a warm pool, so machines stay stopped when their worker exits.
    ``runtimes``: the fleet of account runtimes (``factory runtime``), apart from the workers'.
    """
    if name == "local":
        from autoscaler.providers.local import LocalConfig, LocalProvider
        from autoscaler.providers.local.config import process_env

        state_dir = Path(store.store).expanduser().parent / "local" if not store.is_convex else Path(".factory/local")
        if runtimes:
            command = (sys.executable, "-m", "factory", "runtime")
            return LocalProvider(
                LocalConfig(state_dir=state_dir / "runtimes", command=command, base_env=process_env(os.environ))
            )
        return LocalProvider(LocalConfig(state_dir=state_dir, base_env=process_env(os.environ)))
    if name == "fly":
        from autoscaler.providers.fly import FlyConfig, FlyProvider

        fly = load(FlySettings)
        token = _required(fly.api_token, "FLY_API_TOKEN", "create one with `fly tokens create deploy -a <app>`")
        try:
            config = FlyConfig(
                api_token=SecretStr(token),
                app=_required(fly.app, "FLY_APP", "the Fly app the worker machines belong to"),
                image=_required(fly.image, "FLY_IMAGE", "the worker image, e.g. registry.fly.io/<app>:<tag>"),
                region=fly.region,
                cpu_kind=fly.cpu_kind,
                cpus=fly.cpus,
                memory_mb=fly.memory_mb,
                stop_timeout_s=fly.stop_timeout_s,
                api_base_url=fly.api_base_url,
                keep_stopped=keep_stopped,
            )
        except ValidationError as exc:
            raise settings_error(FlySettings, exc) from None
        return FlyProvider(config)
    if name == "digitalocean":
        from autoscaler.providers.digitalocean import DigitalOceanConfig, DigitalOceanProvider

        do = load(DigitalOceanSettings)
        token = _required(do.token, "DIGITALOCEAN_TOKEN", "create a personal access token with droplet scopes")
        try:
            do_config = DigitalOceanConfig(
                token=SecretStr(token),
                worker_image=_required(do.worker_image, "DIGITALOCEAN_WORKER_IMAGE", "the worker container image"),
                region=do.region,
                size=do.size,
                image=do.image,
                ssh_key_ids=do.ssh_keys,
                api_base_url=do.api_base_url,
                cloud_init_template=Path(do.cloud_init_template) if do.cloud_init_template else None,
            )
        except ValidationError as exc:
            raise settings_error(DigitalOceanSettings, exc) from None
        if runtimes:
            do_config = do_config.model_copy(update={"fleet_tag": "factory-runtime", "name_prefix": "factory-runtime"})
        try:
            return DigitalOceanProvider(do_config)
        except ProviderConfigError as exc:
            if exc.setting != "cloud_init_template":
                raise
            raise ProviderConfigError("DIGITALOCEAN_CLOUD_INIT_TEMPLATE", exc.problem) from None
    raise InvalidInput("--provider", f"unknown provider {name!r}; choose local, fly or digitalocean")


async def check_local_workers_can_start(scale: ScaleSettings) -> None:
    """Refuse to launch local workers that would exit at once: no gateway token, or a gateway that
    refuses it (or whose URL cannot work). A gateway that is merely down is not refused: workers
    wait for it, not ready meanwhile. Raises InvalidInput naming the setting."""
    from factory.cmd_worker import ws_url
    from worker.openclaw.ws import WsDelivery

    token = scale.gateway_token
    if token is None or not token.get_secret_value().strip():
        raise InvalidInput(
            "OPENCLAW_GATEWAY_TOKEN",
            "is not set; local workers need the gateway's auth token (gateway.auth.token), none was launched",
        )
    url = scale.gateway_url or DEFAULT_GATEWAY_URL
    async with WsDelivery(ws_url(url), token, connect_timeout_s=10, probe_timeout_s=15) as gateway:
        try:
            await gateway.probe()
        except DeliveryError as exc:
            if exc.retryable:
                _log.warning("the gateway is not reachable now; launched workers will wait for it", error=str(exc))
                return
            setting = "OPENCLAW_GATEWAY_TOKEN" if isinstance(exc, DeliveryAuthError) else "OPENCLAW_GATEWAY_URL"
            raise InvalidInput(setting, f"local workers could not use the gateway, none was launched: {exc}") from None


def launch_specs(
    scale: ScaleSettings,
    store: StoreSettings,
    provider: str,
    *,
    grace_s: float | None = None,
    max_outage_s: float | None = None,
    log: LogSettings | None = None,
    telegram_api_base: str | None = None,
) -> SpecFactory:
    """What every launched worker is told (contracts.launch.WorkerEnvironment): where the store
    is, how to behave, the conversation it serves (affinity), and for local workers this machine's
    gateway and its state directory. Nothing else."""
    worker_store = scale.worker_store or store.store
    if provider != "local" and not worker_store.startswith(("http://", "https://")):
        raise InvalidInput(
            "FACTORY_WORKER_STORE",
            f"workers on {provider} cannot open the local SQLite file {worker_store!r}; "
            "use a Convex deployment (FACTORY_STORE or FACTORY_WORKER_STORE=https://NAME.convex.cloud)",
        )
    if provider == "local" and not worker_store.startswith(("http://", "https://")):
        worker_store = str(Path(worker_store).expanduser().resolve())
    convex = worker_store.startswith(("http://", "https://"))
    if convex and store.convex_auth_token is not None:
        try:
            check_token_url(worker_store)  # the workers would refuse to send it; refuse to launch them
        except ValueError as exc:
            raise InvalidInput("FACTORY_WORKER_STORE", str(exc)) from None
    shared = {
        "store": worker_store,
        "sqlite_synchronous": None if convex else store.sqlite_synchronous,
        "convex_namespace": store.convex_namespace if convex else None,
        "convex_auth_token": store.convex_auth_token if convex else None,
        # Workers open the sealed secrets their bundles carry with the same key.
        "secrets_key": store.secrets_key,
        "idle_exit_s": scale.idle_timeout_s,
        "grace_s": grace_s,
        "max_outage_s": max_outage_s,
        "log_level": log.level if log is not None else None,
        "log_format": log.format if log is not None else None,
        # Local workers share this machine's gateway; remote images start their own.
        "gateway_url": scale.gateway_url if provider == "local" else None,
        "gateway_token": scale.gateway_token if provider == "local" else None,
        "openclaw_state_dir": str(scale.gateway_state_dir) if provider == "local" and scale.gateway_state_dir else None,
        "telegram_api_base": telegram_api_base,
    }

    def spec(launch_id: str, worker_id: str, conversation_id: str | None, sticky: bool) -> LaunchSpec:
        # A pinned launch claims only its conversation (affinity); unpinned ones take any, and a
        # sticky one pins itself at its first job.
        environment = WorkerEnvironment.model_validate(
            {
                **shared,
                "launch_id": launch_id,
                "worker_id": worker_id,
                "conversation_id": conversation_id,
                "sticky": True if sticky and conversation_id is None else None,
            }
        )
        return LaunchSpec(environment=environment)

    return spec


def _launches_nothing(launch_id: str, worker_id: str, conversation_id: str | None, sticky: bool) -> LaunchSpec:
    raise AssertionError("a dry run launches nothing")


class DryRunPlans:
    """The console's reconcile dry run (``ingress.PlanSource``): what ``factory reconcile --dry-run``
    would print, for the provider and policy FACTORY_PROVIDER and FACTORY_SCALE_* name. A provider
    whose settings are missing says so in one line, on the page."""

    def __init__(self, store: StoreSettings, scale: ScaleSettings) -> None:
        self.store = store
        self.scale = scale

    async def dry_run(self) -> ReconcileRecord:
        machines = make_provider(self.scale.provider, self.store)
        opened = open_full_store(self.store, role="fleet")
        try:
            result = await Reconciler(opened, machines, scaling_policy(self.scale), _launches_nothing).tick(
                dry_run=True
            )
            return result.record(machines.name, await opened.now_ms())
        finally:
            await machines.aclose()
            await opened.aclose()
