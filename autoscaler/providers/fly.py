"""Fly Machines provider: worker machines through the Machines REST API over httpx.

Ownership is metadata: every machine we create carries ``factory_role=worker`` and
``factory_launch_id=<launch id>`` in ``config.metadata``; ``list`` asks the API to filter on the
role and ``find`` on the launch id. Fly has no idempotency key for create, and its list is
eventually consistent (a machine just created may be missing from the next few lists), so:

- create is never retried once it may have reached Fly: a timeout, 408, 5xx or lost response
  raises ``ProviderError(ambiguous=True)`` and the caller resolves it with ``find``;
- the machine name is derived from the launch id, so a repeated create of one launch meets
  "name taken" instead of making a twin;
- ``find`` returning None means "not visible yet" as much as "never created": the reconciler's
  ledger keeps counting the launch until its grace period ends (``autoscaler.provider.find_launch`` polls).

Secrets never go into a machine's ``config.env`` (readable by anyone who can read the machine's
config through the API or ``fly machine status``): they are set as Fly app secrets
(``POST /v1/apps/{app}/secrets/{name}``), which Fly injects into every machine of the app as
environment variables at boot, and each create asks for ``min_secrets_version`` so a machine
never boots before the secrets it needs. A provider sets them once per value it has not set yet.

Requests are paced by per-action token buckets (1 req/s, burst 3; Get 5/s, burst 10), scoped per
machine for machine actions as Fly counts them: creates are app-wide (one a second), while a warm
pool's machines are all started at once (``start``; a stopped machine boots in about a second and
bills only its root filesystem while stopped). With ``keep_stopped`` (a pool) machines are created
without ``auto_destroy``, so one whose worker exits stays stopped for the autoscaler to park or
destroy; ``create(parked=True)`` creates a pool member with ``skip_launch``, not booted.
"""

from __future__ import annotations

import builtins
import hashlib
import json
from typing import Any, Literal

import anyio
import httpx
import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from autoscaler.errors import ProviderError
from autoscaler.provider import LaunchSpec, Machine
from autoscaler.providers._common import (
    CONVERSATION_KEY,
    LAUNCH_KEY,
    ROLE_KEY,
    ROLE_WORKER,
    WORKER_KEY,
    iso_to_ms,
    machine_name,
    secret_values,
    worker_env,
)
from autoscaler.providers._fly_wire import (
    GONE_STATES,
    PROVIDER,
    FlyMachine,
    NameTaken,
    authorization,
    error_from_response,
    error_from_transport,
    normalise_state,
    parse_machines,
)
from autoscaler.ratelimit import KeyedRateLimiter, Limit
from autoscaler.retry import PLATFORM_RETRY, call_with_retry
from contracts.retry import RetryPolicy, Sleep
from contracts.urls import check_token_url

__all__ = ["FLY_LIMITS", "FlyConfig", "FlyProvider"]

_log = structlog.get_logger(__name__)

# Fly's published limits (docs "Rate Limits"): 1 req/s per action with a burst of 3, except Get
# Machine at 5 req/s with a burst of 10.
FLY_LIMITS: dict[str, Limit] = {"get": Limit(rate_per_s=5, burst=10)}
FLY_DEFAULT_LIMIT = Limit(rate_per_s=1, burst=3)

_RESERVED_METADATA = frozenset({ROLE_KEY, LAUNCH_KEY, WORKER_KEY})


class FlyConfig(BaseModel):
    """Everything the Fly provider needs; built by the composition root from FLY_* settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_token: SecretStr
    app: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    image: str = Field(min_length=1)
    region: str | None = None
    cpu_kind: Literal["shared", "performance"] = "shared"
    cpus: int = Field(default=1, ge=1)
    memory_mb: int = Field(default=2048, ge=256, multiple_of=256)
    # SIGTERM, then this long for the worker to finish its job before SIGKILL (Fly's cap is 300 s).
    stop_timeout_s: int = Field(default=300, ge=1, le=300)
    # Extra metadata on every machine (e.g. a pool name); the factory_* keys are ours.
    metadata: dict[str, str] = Field(default_factory=dict)
    request_timeout_s: float = Field(default=30.0, gt=0)
    api_base_url: str = "https://api.machines.dev"
    name_prefix: str = Field(default="factory-worker", pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=30)
    # With a warm pool, a machine whose worker exits stays stopped (to be parked and started
    # again) instead of destroying itself; the autoscaler destroys the ones the pool has no room for.
    keep_stopped: bool = False

    @field_validator("api_token")
    @classmethod
    def _token_present(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty; set FLY_API_TOKEN")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _api_over_tls(cls, value: str) -> str:
        # Every call carries the API token: https, or plain http to a loopback fake only.
        return check_token_url(value)

    @field_validator("metadata")
    @classmethod
    def _metadata_not_ours(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(_RESERVED_METADATA & value.keys())
        if taken:
            raise ValueError(f"{taken[0]!r} is set by the provider itself")
        return value


class FlyProvider:
    """``autoscaler.provider.Provider`` for Fly Machines."""

    def __init__(
        self,
        config: FlyConfig,
        *,
        client: httpx.AsyncClient | None = None,
        limiter: KeyedRateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        """``client`` is closed by ``aclose`` only when the provider made it."""
        self._config = config
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=config.request_timeout_s)
        self._limiter = limiter if limiter is not None else KeyedRateLimiter(FLY_DEFAULT_LIMIT, FLY_LIMITS, sleep=sleep)
        self._retry = retry if retry is not None else PLATFORM_RETRY
        self._sleep = sleep
        self._app_base = f"{config.api_base_url.rstrip('/')}/v1/apps/{config.app}"
        self._base = f"{self._app_base}/machines"
        self._secrets_lock = anyio.Lock()
        self._secrets_digest: str | None = None
        self._secrets_version: int | None = None

    @property
    def name(self) -> str:
        return PROVIDER

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    # -- the Provider protocol ------------------------------------------------------------------

    async def create(self, spec: LaunchSpec, *, parked: bool = False) -> Machine:
        body = self._create_body(spec)
        if parked:
            # Created, not booted: a pool member that costs its root filesystem until started.
            body["skip_launch"] = True
        secrets = secret_values(spec)
        version = await self._app_secrets(spec)
        if version is not None:
            body["min_secrets_version"] = version

        async def attempt() -> httpx.Response:
            return await self._send(
                "create", "POST", self._base, action="create", json=body, create=True, secrets=secrets
            )

        try:
            response = await call_with_retry(attempt, policy=self._retry, sleep=self._sleep)
        except NameTaken as exc:
            return await self._adopt(exc, spec)
        except ProviderError as exc:
            if exc.ambiguous:
                _log.warning("fly create ambiguous", launch_id=spec.launch_id, error=str(exc))
            raise
        machine = self._machine(self._parse_one("create", response))
        _log.info("fly machine created", machine_id=machine.machine_id, launch_id=spec.launch_id)
        return machine

    async def list(self) -> builtins.list[Machine]:
        return await self._list({f"metadata.{ROLE_KEY}": ROLE_WORKER})

    async def find(self, launch_id: str) -> Machine | None:
        found = await self._list({f"metadata.{ROLE_KEY}": ROLE_WORKER, f"metadata.{LAUNCH_KEY}": launch_id})
        # Filter again here: a server that ignored the query must not hand us someone else's machine.
        matches = [machine for machine in found if machine.launch_id == launch_id]
        return matches[0] if matches else None

    async def start(self, machine: Machine) -> None:
        # Machine-scoped: Fly counts starts per machine, so a pool starts all at once.
        await self._send(
            "start", "POST", f"{self._base}/{machine.machine_id}/start", action="start", scope=machine.machine_id
        )
        _log.info("fly machine started", machine_id=machine.machine_id, launch_id=machine.launch_id)

    async def reconfigure(self, machine: Machine, spec: LaunchSpec) -> None:
        """Fly's update takes the whole config (no partial updates); ``skip_launch`` keeps a stopped
        machine stopped, so the start that follows is the one that boots it. Safe to repeat: the
        same config again changes nothing a boot would see."""
        body = self._create_body(spec)
        del body["name"]  # immutable, like the region: the update names neither
        body.pop("region", None)
        body["skip_launch"] = True
        secrets = secret_values(spec)
        version = await self._app_secrets(spec)
        if version is not None:
            body["min_secrets_version"] = version
        url = f"{self._base}/{machine.machine_id}"

        async def attempt() -> httpx.Response:
            return await self._send(
                "update", "POST", url, action="update", scope=machine.machine_id, json=body, secrets=secrets
            )

        await call_with_retry(attempt, policy=self._retry, sleep=self._sleep)
        pin = spec.environment.conversation_id
        _log.info("fly machine reconfigured", machine_id=machine.machine_id, launch_id=spec.launch_id, pinned=bool(pin))

    async def suspend(self, machine: Machine) -> None:
        # Machine-scoped like start; billed as stopped while suspended (fleet-apis §1.3).
        await self._send(
            "suspend", "POST", f"{self._base}/{machine.machine_id}/suspend", action="suspend", scope=machine.machine_id
        )
        _log.info("fly machine suspended", machine_id=machine.machine_id, launch_id=machine.launch_id)

    async def stop(self, machine: Machine) -> None:
        body = {"signal": "SIGTERM", "timeout": f"{self._config.stop_timeout_s}s"}
        await self._idempotent("stop", "POST", f"{self._base}/{machine.machine_id}/stop", machine.machine_id, json=body)

    async def destroy(self, machine: Machine) -> None:
        # force=true: a worker that ignored its drain is killed rather than left billing.
        await self._idempotent(
            "destroy",
            "DELETE",
            f"{self._base}/{machine.machine_id}",
            machine.machine_id,
            params={"force": "true"},
        )

    # -- beyond the protocol --------------------------------------------------------------------

    async def wait(
        self, machine: Machine, state: Literal["started", "stopped", "destroyed"], *, timeout_s: int = 60
    ) -> None:
        """Block until Fly reports ``state``: one server-side wait, capped at 60 s by Fly.

        Raises ``ProviderError(status=408, retryable=True)`` when the state was not reached in time;
        that is not retried here, since the caller chose the deadline.
        """
        params: dict[str, str] = {"state": state, "timeout": str(max(1, min(timeout_s, 60)))}
        if state == "stopped":
            # Fly needs the instance id to wait for "stopped" (fleet-apis §1.2).
            current = await self._get(machine.machine_id)
            if current.instance_id:
                params["instance_id"] = current.instance_id
        url = f"{self._base}/{machine.machine_id}/wait"

        await self._send(
            "wait", "GET", url, action="wait", scope=machine.machine_id, params=params, extra_timeout=timeout_s
        )

    # -- internals ------------------------------------------------------------------------------

    def _create_body(self, spec: LaunchSpec) -> dict[str, Any]:
        config = self._config
        metadata = {**config.metadata, ROLE_KEY: ROLE_WORKER, LAUNCH_KEY: spec.launch_id, WORKER_KEY: spec.worker_id}
        if spec.environment.conversation_id is not None:
            metadata[CONVERSATION_KEY] = spec.environment.conversation_id
        body: dict[str, Any] = {
            "name": machine_name(config.name_prefix, spec.launch_id),
            "config": {
                "image": config.image,
                "guest": {"cpu_kind": config.cpu_kind, "cpus": config.cpus, "memory_mb": config.memory_mb},
                "env": worker_env(spec, self.name, secrets=False),
                "metadata": metadata,
                # The worker exits when idle or drained; the machine then destroys itself (Fly only
                # does with restart policy "no"), unless it is to be kept for the warm pool.
                "auto_destroy": not config.keep_stopped,
                "restart": {"policy": "no"},
                "stop_config": {"signal": "SIGTERM", "timeout": f"{config.stop_timeout_s}s"},
            },
        }
        if config.region:
            body["region"] = config.region
        return body

    async def _app_secrets(self, spec: LaunchSpec) -> int | None:
        """Set the spec's secrets as app secrets (unless this provider already set these values);
        the secrets version a machine must wait for, if Fly said."""
        wanted = spec.environment.secret_env()
        if not wanted:
            return None
        digest = hashlib.sha256(json.dumps(sorted(wanted.items())).encode()).hexdigest()
        async with self._secrets_lock:
            if self._secrets_digest == digest:
                return self._secrets_version
            versions: builtins.list[int] = []
            for name, value in sorted(wanted.items()):
                url = f"{self._app_base}/secrets/{name}"

                async def attempt(url: str = url, value: str = value) -> httpx.Response:
                    # Setting the same value again is harmless: safe to retry.
                    payload = {"value": value}
                    return await self._send("set secret", "POST", url, action="secrets", json=payload, secrets=[value])

                answer = self._json("set secret", await call_with_retry(attempt, policy=self._retry, sleep=self._sleep))
                version = answer.get("version", answer.get("Version")) if isinstance(answer, dict) else None
                if isinstance(version, int) and not isinstance(version, bool):
                    versions.append(version)
            self._secrets_digest, self._secrets_version = digest, max(versions, default=None)
            _log.info("fly app secrets set", names=sorted(wanted), version=self._secrets_version)
            return self._secrets_version

    async def _adopt(self, exc: NameTaken, spec: LaunchSpec) -> Machine:
        """Our deterministic name is taken: an earlier create of this launch got through."""
        found = await self.find(spec.launch_id)
        if found is None:
            # Named like ours but not (yet) listed with our launch id: the caller looks again later.
            raise ProviderError(
                PROVIDER,
                "create",
                f"a machine named for launch {spec.launch_id!r} already exists but is not listed yet; "
                "look it up by launch id",
                status=exc.status,
                retryable=True,
                ambiguous=True,
                request_id=exc.request_id,
            ) from exc
        _log.info("fly create adopted existing machine", machine_id=found.machine_id, launch_id=spec.launch_id)
        return found

    async def _list(self, params: dict[str, str]) -> builtins.list[Machine]:
        async def attempt() -> builtins.list[Any]:
            response = await self._send("list", "GET", self._base, action="list", params=params)
            payload = self._json("list", response)
            if not isinstance(payload, builtins.list):
                # Never read a garbled answer as "no machines": the planner would launch a fleet twice.
                raise ProviderError(
                    PROVIDER,
                    "list",
                    "the API answered 2xx without a JSON array",
                    status=response.status_code,
                    retryable=True,
                )
            return payload

        machines, skipped = parse_machines(await call_with_retry(attempt, policy=self._retry, sleep=self._sleep))
        if skipped:
            _log.warning("fly list skipped unreadable machines", count=skipped)
        return [self._machine(m) for m in machines if self._ours(m) and (m.state or "") not in GONE_STATES]

    async def _get(self, machine_id: str) -> FlyMachine:
        async def attempt() -> httpx.Response:
            return await self._send("get", "GET", f"{self._base}/{machine_id}", action="get", scope=machine_id)

        response = await call_with_retry(attempt, policy=self._retry, sleep=self._sleep)
        return self._parse_one("get", response)

    async def _idempotent(
        self,
        operation: str,
        method: str,
        url: str,
        machine_id: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> None:
        """Stop and destroy: safe to repeat, and a machine that is already gone counts as done."""

        async def attempt() -> None:
            await self._send(operation, method, url, action=operation, scope=machine_id, json=json, params=params)

        try:
            await call_with_retry(attempt, policy=self._retry, sleep=self._sleep)
        except ProviderError as exc:
            if exc.status == 404:
                return
            raise

    async def _send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        action: str,
        scope: str = "",
        json: Any = None,
        params: dict[str, str] | None = None,
        create: bool = False,
        secrets: builtins.list[str] | None = None,
        extra_timeout: float = 0.0,
    ) -> httpx.Response:
        await self._limiter.acquire(action, scope)
        timeout = self._config.request_timeout_s + extra_timeout
        # Revealed per request, so the provider object holds no plain-text copy of the token.
        token = self._config.api_token.get_secret_value()
        try:
            response = await self._client.request(
                method,
                url,
                json=json,
                params=params,
                headers={"Authorization": authorization(token), "Accept": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise error_from_transport(operation, exc, create=create, timeout_s=timeout) from exc
        if response.is_success:
            return response
        error = error_from_response(
            operation, response, app=self._config.app, create=create, secrets=[token, *(secrets or [])]
        )
        if response.status_code == 429:
            # Hold the whole bucket, not just this caller: the server's clock is the one that counts.
            self._limiter.pause(action, error.retry_after_s or 1.0, scope)
        raise error

    def _json(self, operation: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            return None

    def _parse_one(self, operation: str, response: httpx.Response) -> FlyMachine:
        machines, _ = parse_machines([self._json(operation, response)])
        if not machines:
            # A 2xx we cannot read: for a create, the machine exists but we do not know its id.
            create = operation == "create"
            raise ProviderError(
                PROVIDER,
                operation,
                "the API answered 2xx without a readable machine" + ("; look it up by launch id" if create else ""),
                status=response.status_code,
                retryable=True,
                ambiguous=create,
            )
        return machines[0]

    def _ours(self, machine: FlyMachine) -> bool:
        # A machine whose config cannot be read (host unreachable) was matched by the server-side
        # metadata filter; keep it, as "unknown", so it is neither double-counted nor forgotten.
        return machine.config is None or machine.metadata.get(ROLE_KEY) == ROLE_WORKER

    def _machine(self, machine: FlyMachine) -> Machine:
        metadata = machine.metadata
        return Machine(
            machine_id=machine.id,
            provider=PROVIDER,
            state=normalise_state(machine),
            launch_id=metadata.get(LAUNCH_KEY),
            region=machine.region,
            created_at_ms=iso_to_ms(machine.created_at),
            worker_id=metadata.get(WORKER_KEY),
            conversation_id=metadata.get(CONVERSATION_KEY),
        )
