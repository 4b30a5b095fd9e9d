"""DigitalOcean provider: one droplet per worker, through python-digitalocean.

Ownership is tags: every droplet we create carries ``factory`` (the fleet) and
``factory-launch-<launch id>`` (this create), plus ``factory-worker-<worker id>`` when the id fits
DigitalOcean's tag alphabet. Names are not unique on DigitalOcean, so the launch tag is the only
way to find an ambiguous create again; ``find`` looks it up.

The library is synchronous: each call runs in a worker thread (at most four at once). Its transport
is replaced (``_do_transport``) so that every request has a timeout from config and every error
keeps its HTTP status. Requests are paced under DigitalOcean's per-token limits (250 per minute,
5,000 per hour) and a 429 waits for ``retry-after`` or ``ratelimit-reset``.

The droplet boots the worker container from cloud-init user_data rendered from
images/digitalocean/cloud-init.yaml; when the worker exits the droplet powers off, and an "off"
droplet (still billed) is reported as ``stopped`` so the planner destroys it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import digitalocean
import requests
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from autoscaler.errors import ProviderError
from autoscaler.provider import LaunchSpec, Machine
from autoscaler.providers._common import machine_name, secret_values, worker_env
from autoscaler.providers._do_transport import FactoryDroplet, FactoryManager, HttpStatusError, check_library
from autoscaler.providers._do_wire import (
    ARCHIVED,
    FLEET_TAG,
    LAUNCH_TAG_PREFIX,
    PROVIDER,
    TAG,
    WORKER_TAG_PREFIX,
    Droplet,
    error_from_status,
    error_from_transport,
    parse_droplets,
)
from autoscaler.providers.cloud_init import load_template, render_cloud_init
from autoscaler.ratelimit import Clock, KeyedRateLimiter, Limit
from autoscaler.retry import PLATFORM_RETRY, call_with_retry
from contracts.retry import RetryPolicy, Sleep
from contracts.urls import check_token_url

__all__ = ["DO_LIMITS", "DigitalOceanConfig", "DigitalOceanProvider"]

T = TypeVar("T")

_log = structlog.get_logger(__name__)

# A bucket admits at most burst + rate * T calls in any T seconds, so each is sized to stay under
# DigitalOcean's rolling limits: 10 + 4/s * 60 s = 250 a minute; 100 + 4900/3600 * 3600 = 5,000 an hour.
DO_LIMITS: dict[str, Limit] = {
    "minute": Limit(rate_per_s=4.0, burst=10),
    "hour": Limit(rate_per_s=4900 / 3600, burst=100),
}
_THREADS = 4


class DigitalOceanConfig(BaseModel):
    """Everything the DigitalOcean provider needs; built by the composition root from settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    token: SecretStr
    # The container image the droplet runs (cloud-init pulls it), e.g. ghcr.io/acme/factory-worker:1.2.
    worker_image: str = Field(min_length=1)
    region: str = Field(default="nyc3", min_length=1)
    size: str = Field(default="s-1vcpu-2gb", min_length=1)
    # A base image with Docker (DigitalOcean's marketplace image); cloud-init installs docker.io if absent.
    image: str = Field(default="docker-20-04", min_length=1)
    # Numeric ids only: public keys would make the library list (and maybe create) account keys.
    ssh_key_ids: tuple[int, ...] = ()
    extra_tags: tuple[str, ...] = ()
    vpc_uuid: str | None = None
    monitoring: bool = False
    stop_timeout_s: int = Field(default=300, ge=1, le=3600)
    request_timeout_s: float = Field(default=30.0, gt=0)
    api_base_url: str = "https://api.digitalocean.com/v2/"
    cloud_init_template: Path | None = None
    name_prefix: str = Field(default="factory-worker", pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=30)
    # The tag every droplet of this fleet carries and lists are filtered by: account runtimes
    # ("factory-runtime") are a fleet of their own, invisible to worker scaling.
    fleet_tag: str = Field(default=FLEET_TAG, pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)

    @field_validator("token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty; set DIGITALOCEAN_TOKEN")
        return value

    @field_validator("extra_tags")
    @classmethod
    def _tags_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for tag in value:
            if not TAG.fullmatch(tag):
                raise ValueError(f"{tag!r} is not a valid tag (letters, digits, _ - :)")
            if tag == FLEET_TAG or tag.startswith((LAUNCH_TAG_PREFIX, WORKER_TAG_PREFIX)):
                raise ValueError(f"{tag!r} is set by the provider itself")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        # Every call carries the token: https, or plain http to a loopback fake only.
        check_token_url(value)
        # urljoin drops the last path segment of a base without one ("/v2" + "droplets" = "/droplets").
        return value if value.endswith("/") else value + "/"


class DigitalOceanProvider:
    """``autoscaler.provider.Provider`` for DigitalOcean droplets."""

    def __init__(
        self,
        config: DigitalOceanConfig,
        *,
        limiter: KeyedRateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = anyio.sleep,
        wall_clock: Clock = time.time,
    ) -> None:
        """``wall_clock`` (epoch seconds) turns ``ratelimit-reset`` into a wait."""
        check_library()
        self._config = config
        self._template = load_template(config.cloud_init_template)
        self._limiter = (
            limiter if limiter is not None else KeyedRateLimiter(DO_LIMITS["minute"], DO_LIMITS, sleep=sleep)
        )
        self._retry = retry if retry is not None else PLATFORM_RETRY
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._session = requests.Session()
        self._threads = anyio.CapacityLimiter(_THREADS)

    @property
    def name(self) -> str:
        return PROVIDER

    async def aclose(self) -> None:
        self._session.close()

    # -- the Provider protocol ------------------------------------------------------------------

    async def create(self, spec: LaunchSpec, *, parked: bool = False) -> Machine:
        if parked:
            raise ProviderError(
                PROVIDER,
                "create",
                "a droplet boots when it is created; the warm pool is filled with drained droplets instead "
                "(FACTORY_SCALE_POOL_PREFILL=false)",
            )
        config = self._config
        launch_tag = self._launch_tag("create", spec.launch_id)
        tags = [config.fleet_tag, launch_tag, *config.extra_tags]
        worker_tag = WORKER_TAG_PREFIX + spec.worker_id
        if TAG.fullmatch(worker_tag):
            tags.append(worker_tag)
        user_data = render_cloud_init(
            self._template,
            worker_image=config.worker_image,
            env=worker_env(spec, self.name),
            stop_timeout_s=config.stop_timeout_s,
        )

        def call() -> Any:
            droplet = self._library(
                FactoryDroplet,
                name=machine_name(config.name_prefix, spec.launch_id),
                region=config.region,
                size_slug=config.size,
                image=config.image,
                ssh_keys=list(config.ssh_key_ids),
                tags=tags,
                user_data=user_data,
                monitoring=config.monitoring,
                vpc_uuid=config.vpc_uuid,
            )
            droplet.create()
            response: requests.Response | None = droplet.factory_last_response
            return response.json() if response is not None else None

        try:
            data = await self._call("create", call, create=True, secrets=secret_values(spec))
        except ProviderError as exc:
            if exc.ambiguous:
                _log.warning("digitalocean create ambiguous", launch_id=spec.launch_id, error=str(exc))
            raise
        droplets, _ = parse_droplets({"droplets": [data.get("droplet") if isinstance(data, dict) else None]})
        if not droplets:
            raise ProviderError(
                PROVIDER,
                "create",
                "accepted, but the answer has no droplet id; look it up by launch tag",
                retryable=True,
                ambiguous=True,
            )
        machine = self._machine(droplets[0])
        _log.info("digitalocean droplet created", machine_id=machine.machine_id, launch_id=spec.launch_id)
        return machine

    async def list(self) -> builtins.list[Machine]:
        return await self._list_tag("list", self._config.fleet_tag)

    async def find(self, launch_id: str) -> Machine | None:
        tag = self._launch_tag("find", launch_id)
        found = [m for m in await self._list_tag("find", tag) if m.launch_id == launch_id]
        return found[0] if found else None

    async def start(self, machine: Machine) -> None:
        """Power a parked (off) droplet on: systemd starts the worker unit again."""
        await self._power("start", machine, "power_on", done=("active",))
        _log.info("digitalocean droplet powered on", machine_id=machine.machine_id, launch_id=machine.launch_id)

    async def stop(self, machine: Machine) -> None:
        """Graceful shutdown (ACPI): systemd stops the worker unit, which SIGTERMs the worker."""
        await self._power("stop", machine, "shutdown", done=("off", None))

    async def destroy(self, machine: Machine) -> None:
        droplet_id = self._droplet_id("destroy", machine)

        def call() -> None:
            self._library(FactoryDroplet, id=droplet_id).destroy()

        try:
            await self._call("destroy", call)
        except ProviderError as exc:
            if exc.status != 404:
                raise

    # -- internals ------------------------------------------------------------------------------

    def _library(self, cls: Callable[..., T], **fields: Any) -> T:
        """A library object wired to our transport (see ``_do_transport``)."""
        return cls(
            token=self._config.token.get_secret_value(),
            end_point=self._config.api_base_url,
            _session=self._session,
            factory_timeout_s=self._config.request_timeout_s,
            **fields,
        )

    async def _list_tag(self, operation: str, tag: str) -> builtins.list[Machine]:
        def call() -> Any:
            return self._library(FactoryManager).get_data("droplets/", params={"tag_name": tag})

        payload = await self._call(operation, call)
        if not isinstance(payload, dict) or not isinstance(payload.get("droplets"), builtins.list):
            # Never read a garbled answer as "no droplets": the planner would launch a fleet twice.
            raise ProviderError(PROVIDER, operation, "the API answered without a droplets array", retryable=True)
        droplets, skipped = parse_droplets(payload)
        if skipped:
            _log.warning("digitalocean list skipped unreadable droplets", count=skipped)
        fleet = self._config.fleet_tag
        return [self._machine(d) for d in droplets if d.status != ARCHIVED and fleet in (d.tags or [fleet])]

    async def _power(self, operation: str, machine: Machine, action: str, *, done: tuple[str | None, ...]) -> None:
        """A power action on the droplet. DigitalOcean refuses (422) one that would change nothing;
        a droplet already in a ``done`` status (None: gone, 404) counts as done."""
        droplet_id = self._droplet_id(operation, machine)

        def call() -> None:
            getattr(self._library(FactoryDroplet, id=droplet_id), action)()

        try:
            await self._call(operation, call)
        except ProviderError as exc:
            if exc.status == 404 and None in done:
                return
            if exc.status == 422 and await self._status(droplet_id, operation) in done:
                return
            raise

    async def _status(self, droplet_id: int, operation: str) -> str | None:
        """The droplet's status now, or None when it no longer exists."""

        def call() -> Any:
            return self._library(FactoryManager).get_data(f"droplets/{droplet_id}")

        try:
            data = await self._call(operation, call)
        except ProviderError as exc:
            if exc.status == 404:
                return None
            raise
        droplet = data.get("droplet") if isinstance(data, dict) else None
        status = droplet.get("status") if isinstance(droplet, dict) else None
        return status if isinstance(status, str) else "unknown"

    async def _call(
        self, operation: str, call: Callable[[], T], *, create: bool = False, secrets: builtins.list[str] | None = None
    ) -> T:
        hidden = [self._config.token.get_secret_value(), *(secrets or [])]

        async def attempt() -> T:
            await self._limiter.acquire("minute")
            await self._limiter.acquire("hour")
            try:
                return await anyio.to_thread.run_sync(call, limiter=self._threads)
            except HttpStatusError as exc:
                error = error_from_status(operation, exc, create=create, secrets=hidden, now_s=self._wall_clock())
                if exc.status == 429:
                    # Every caller shares the token's budget: hold them all, not just this one.
                    self._limiter.pause("minute", error.retry_after_s or 1.0)
                raise error from None
            except (requests.exceptions.InvalidJSONError, digitalocean.Error, KeyError, IndexError, TypeError) as exc:
                # A 2xx whose body the library could not read. For a create the droplet may exist.
                raise ProviderError(
                    PROVIDER,
                    operation,
                    f"unreadable answer ({type(exc).__name__})",
                    retryable=create,
                    ambiguous=create,
                ) from exc
            except requests.RequestException as exc:
                raise error_from_transport(
                    operation, exc, create=create, timeout_s=self._config.request_timeout_s
                ) from exc

        return await call_with_retry(attempt, policy=self._retry, sleep=self._sleep)

    def _launch_tag(self, operation: str, launch_id: str) -> str:
        tag = LAUNCH_TAG_PREFIX + launch_id
        if not TAG.fullmatch(tag):
            raise ProviderError(
                PROVIDER,
                operation,
                f"launch id {launch_id!r} cannot be a DigitalOcean tag: use letters, digits, _ - : "
                "and at most 240 characters",
            )
        return tag

    def _droplet_id(self, operation: str, machine: Machine) -> int:
        try:
            return int(machine.machine_id)
        except ValueError:
            raise ProviderError(
                PROVIDER, operation, f"{machine.machine_id!r} is not a droplet id (droplet ids are numbers)"
            ) from None

    def _machine(self, droplet: Droplet) -> Machine:
        return Machine(
            machine_id=str(droplet.id),
            provider=PROVIDER,
            state=droplet.state,
            launch_id=droplet.tag_value(LAUNCH_TAG_PREFIX),
            region=droplet.region_slug,
            created_at_ms=droplet.created_at_ms,
            worker_id=droplet.tag_value(WORKER_TAG_PREFIX),
        )
