"""Bridge tool calls: ``factory bridge call`` posts to the agent's app, ``POST {baseUrl}/agent/execute``.

The agent runs the command through its baked ``agent-bridge`` skill (the exec tool). The worker
writes the agent's resolved bridge settings to a 0600 file in a 0700 folder at every job
(:func:`write_bridge_config`): the profile's fields and secrets, in upstream's order, then the
worker's environment (:mod:`contracts.bridge`). The command reads that file.

A call is refused before anything is sent when the base URL's host is not on the profile's
``allowedHosts``, carries credentials, or resolves to a link-local or cloud-metadata address.
Redirects are followed only to the same origin. 429 (honouring Retry-After) and 5xx are retried
with backoff, as are connection failures; a 4xx is final. Headers as upstream's bridge:
``X-Agent-Service-Id``, ``X-Agent-Service-Key``, ``X-Agent-App``; body ``{functionKey, args}``.

The error tree::

    FactoryError
    └── BridgeError            the call did not get an answer we can use
        ├── BridgeRefused      config incomplete, host not allowed, redirect elsewhere (not retryable)
        ├── BridgeStatus       the app answered 429 or 5xx (retryable) — or another status (not)
        └── BridgeUnavailable  connection refused, timeout, DNS (retryable)
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contracts.bridge import complete_bridge, missing_fields
from contracts.errors import FactoryError
from contracts.models import ResolvedBridge
from contracts.redact import Redactor
from contracts.retry import RetryPolicy, Sleep, parse_retry_after, retrying

BRIDGE_RETRY = RetryPolicy(attempts=3, initial_s=0.25, max_s=4.0, jitter_s=0.1, max_retry_after_s=30.0)
DEFAULT_TIMEOUT_S = 30.0
MAX_REDIRECTS = 3
# Cloud metadata services outside the link-local ranges (AWS IPv6, Alibaba).
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_METADATA_NAMES = {"metadata.google.internal", "metadata", "instance-data"}
Resolver = Callable[[str, int], Awaitable[list[str]]]


class BridgeError(FactoryError):
    retryable = False


class BridgeRefused(BridgeError):
    retryable = False


class BridgeUnavailable(BridgeError):
    retryable = True


class BridgeStatus(BridgeError):
    def __init__(self, message: str, status: int, body: Any, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after_s = retry_after_s
        self.retryable = status == 429 or status >= 500


class BridgeSettings(BaseModel):
    """What ``factory bridge call`` reads: the agent's bridge, resolved and completed by the worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = None
    service_id: str | None = None
    service_key: SecretStr | None = None
    app_key: str | None = None
    allowed_hosts: list[str] = Field(default_factory=list)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)
    # What is still missing (by wire name); a call names them instead of sending anything.
    missing: list[str] = Field(default_factory=list)


def write_bridge_config(
    path: Path, resolved: ResolvedBridge, env: Mapping[str, str | None], *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> BridgeSettings:
    """Complete ``resolved`` from the worker's ``env`` and write it to ``path`` (0600, folder 0700)."""
    filled = complete_bridge(resolved, env)
    settings = BridgeSettings(
        base_url=filled.base_url,
        service_id=filled.service_id,
        service_key=filled.service_key,
        app_key=filled.app_key,
        allowed_hosts=filled.allowed_hosts,
        timeout_s=timeout_s,
        missing=missing_fields(filled),
    )
    data = settings.model_dump(mode="json")
    data["service_key"] = settings.service_key.get_secret_value() if settings.service_key else None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    os.replace(temp, path)
    return settings


def read_bridge_config(path: Path) -> BridgeSettings:
    try:
        return BridgeSettings.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BridgeRefused(
            f"no bridge settings at {path}: the agent has no bridge, or no job has run on this machine yet"
        ) from None
    except ValueError as exc:
        raise BridgeRefused(f"the bridge settings at {path} are unreadable: {type(exc).__name__}") from None


# --------------------------------------------------------------------------- where calls may go


def check_url(url: str, allowed_hosts: Sequence[str]) -> httpx.URL:
    """The base URL, if it may be called: http(s), no credentials, host on the allow-list, no
    link-local or metadata literal. Raises BridgeRefused naming what is wrong."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise BridgeRefused(f"baseUrl {url!r} is not a URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BridgeRefused(f"baseUrl {url!r} must be an http(s) URL")
    if parsed.userinfo:
        raise BridgeRefused("baseUrl must not carry credentials")
    host = parsed.host.lower().rstrip(".")
    allowed = {h.lower().rstrip(".") for h in allowed_hosts}
    if host not in allowed and f"{host}:{parsed.port}" not in allowed:
        shown = ", ".join(sorted(allowed)) or "none"
        raise BridgeRefused(f"host {host!r} is not on the agent's bridge allow-list (allowedHosts: {shown})")
    if host in _METADATA_NAMES:
        raise BridgeRefused(f"host {host!r} is a cloud metadata service")
    with contextlib.suppress(ValueError):
        _check_address(host)
    return parsed


def _check_address(address: str) -> None:
    ip = ipaddress.ip_address(address.strip("[]"))
    if ip.is_link_local or ip in _METADATA or ip.is_multicast or ip.is_unspecified:
        raise BridgeRefused(f"address {ip} is link-local or a metadata service; bridge calls never go there")


async def _system_resolver(host: str, port: int) -> list[str]:
    infos = await anyio.getaddrinfo(host, port)
    return [str(info[4][0]) for info in infos]


class BridgeClient:
    """One agent's bridge: ``await client.call("tasks.list", {"limit": 3})`` → the app's answer."""

    def __init__(
        self,
        settings: BridgeSettings,
        *,
        retry: RetryPolicy = BRIDGE_RETRY,
        sleep: Sleep = anyio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = _system_resolver,
    ) -> None:
        self.settings = settings
        self._retry = retry
        self._sleep = sleep
        self._resolver = resolver
        self._redact = Redactor(*([settings.service_key] if settings.service_key else []))
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s), follow_redirects=False, transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def call(self, function_key: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run the function; returns ``{success, status, functionKey, result?, error?}``.

        Raises BridgeRefused before sending anything that must not be sent."""
        key = function_key.removeprefix("bridge.")
        if not key.strip():
            raise BridgeRefused("FUNCTION: name the app function to call, e.g. tasks.list")
        s = self.settings
        if s.missing:
            raise BridgeRefused(f"the agent's bridge config is incomplete: {', '.join(s.missing)} not set")
        assert s.base_url is not None and s.service_id is not None and s.service_key is not None  # not missing
        base = check_url(s.base_url, s.allowed_hosts)
        await self._check_resolves(base)
        url = base.join(base.path.rstrip("/") + "/agent/execute")
        headers = {
            "X-Agent-Service-Id": s.service_id,
            "X-Agent-Service-Key": s.service_key.get_secret_value(),
            "X-Agent-App": s.app_key or "",
        }
        body = {"functionKey": key, "args": dict(args)}
        status, payload = 0, None
        try:
            async for attempt in retrying(
                self._retry,
                retry=lambda exc: isinstance(exc, BridgeError) and exc.retryable,
                event="bridge call retried",
                context={"function": key},
                server_delay=lambda exc: exc.retry_after_s if isinstance(exc, BridgeStatus) else None,
                sleep=self._sleep,
            ):
                with attempt:
                    status, payload = await self._post(url, headers, body)
        except BridgeStatus as exc:
            return _answer(key, exc.status, exc.body)
        return _answer(key, status, payload)

    async def _check_resolves(self, url: httpx.URL) -> None:
        try:
            addresses = await self._resolver(url.host, url.port or (443 if url.scheme == "https" else 80))
        except OSError as exc:
            raise BridgeUnavailable(f"cannot resolve {url.host}: {exc.strerror or exc}") from None
        for address in addresses:
            _check_address(address)

    async def _post(self, url: httpx.URL, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        origin = (url.scheme, url.host, url.port)
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = await self._client.post(url, headers=headers, json=body)
            except httpx.TimeoutException:
                raise BridgeUnavailable(f"{url.host} did not answer within {self.settings.timeout_s:g} s") from None
            except httpx.TransportError as exc:
                raise BridgeUnavailable(self._redact(f"cannot reach {url.host}: {exc!r}")) from None
            if response.is_redirect:
                target = url.join(response.headers.get("location", ""))
                if (target.scheme, target.host, target.port) != origin:
                    raise BridgeRefused(f"{url.host} redirected to another origin ({target.host}); not followed")
                url = target
                continue
            payload = _json_body(response)
            if response.status_code == 429 or response.status_code >= 500:
                raise BridgeStatus(
                    f"the app answered HTTP {response.status_code}",
                    response.status_code,
                    payload,
                    parse_retry_after(response.headers.get("retry-after"), time.time()),
                )
            return response.status_code, payload
        raise BridgeRefused(f"more than {MAX_REDIRECTS} redirects from {url.host}")


def _json_body(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _answer(key: str, status: int, payload: Any) -> dict[str, Any]:
    body = payload if isinstance(payload, dict) else {}
    http_ok = 200 <= status < 300
    answer: dict[str, Any] = {"success": http_ok and body.get("success") is True, "status": status, "functionKey": key}
    if "result" in body:
        answer["result"] = body["result"]
    error = body.get("error") if body.get("error") is not None else (None if http_ok else f"HTTP {status}")
    if error is not None:
        answer["error"] = error
    return answer
