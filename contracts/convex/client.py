"""A small asyncio client for Convex's HTTP function API, with the contract's typed errors.

``POST {url}/api/{query|mutation}`` with ``{"path": "<namespace>:<function>", "args": {...},
"format": "json"}``; the reply is ``{"status": "success", "value": ...}`` or ``{"status":
"error", "errorMessage": ..., "errorData": ...}`` (HTTP 200, or 560 on some backends).

Errors:

* a transport error, a timeout, 408, 429 or a 5xx other than 560 → :class:`StoreUnavailable`
  (retryable), one line naming the store URL and the cause; when Convex itself refused the call
  (429, or 503 with its error code: overloaded, rejected, or OCC retries exhausted), nothing ran or
  committed and the error is the subclass :class:`NotCommitted`;
* ``status: "error"`` → :class:`StoreFunctionError` naming the function, or, when the module
  threw a ``ConvexError`` with a known ``errorData.code``, the same typed error the SQLite store
  raises (:class:`InvalidInput`, :class:`AgentUnavailable`, :class:`ConversationConflict`,
  :class:`NotFound`);
* any other 4xx (bad key, bad request) → :class:`StoreFunctionError`, not retryable.

Retries follow one tenacity policy. Calls the caller marks safe to repeat (queries, mutations fenced
by a lease or naturally idempotent) are retried on any :class:`StoreUnavailable`. Other mutations
(a claim, a plain enqueue) are retried only on :class:`NotCommitted`: HTTP mutations are not
deduplicated by Convex, so after a timeout or a dropped connection their outcome is unknown and
they are never retried blindly.

Nothing here logs arguments, results or headers: worker ids, lease ids and tokens stay out of logs
and error messages.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import structlog
from pydantic import SecretStr

from contracts.errors import (
    AgentUnavailable,
    ConversationConflict,
    FactoryError,
    InvalidInput,
    NotFound,
    StoreFunctionError,
    StoreUnavailable,
)
from contracts.retry import RetryPolicy, retrying
from contracts.runtime import AccessRefused
from contracts.urls import check_token_url

_log = structlog.get_logger("contracts.convex")

Kind = Literal["query", "mutation"]
RETRYABLE_STATUS = frozenset({408, 429})
REFUSED_STATUS = frozenset({429, 503})  # with Convex's own {code} body: the call never committed
UDF_FAILED = 560  # some Convex backends answer a failed function with 560 and the usual body


class NotCommitted(StoreUnavailable):
    """Convex refused the call before it committed (429, or 503 with a Convex error code):
    retrying is safe even for a mutation that is neither fenced nor idempotent."""


# A safe call is retried after StoreUnavailable: 0.25 s doubling to 4 s, with as much jitter.
DEFAULT_RETRY = RetryPolicy(attempts=4, initial_s=0.25, max_s=4.0, jitter_s=0.25)


def normalize_url(url: str) -> str:
    """The deployment's API origin: ``.convex.site`` (HTTP actions) becomes ``.convex.cloud``."""
    raw = url.strip()
    try:
        parsed = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise InvalidInput("url", f"{raw!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidInput("url", f"{raw!r} must be an http(s) URL such as https://happy-animal-123.convex.cloud")
    if parsed.userinfo:
        raise InvalidInput("url", "must not carry credentials; pass a token or deploy key instead")
    if parsed.query or parsed.fragment:
        raise InvalidInput("url", "must be the deployment origin, without a query or fragment")
    host = parsed.host
    if host.endswith(".convex.site"):
        host = host.removesuffix(".convex.site") + ".convex.cloud"
    return str(parsed.copy_with(host=host)).rstrip("/")


def auth_header(*, token: SecretStr | str | None, deploy_key: SecretStr | str | None) -> str | None:
    """``Bearer <JWT>`` for a user identity, ``Convex <deploy key>`` for an admin identity."""
    if token is not None and deploy_key is not None:
        raise InvalidInput("auth_token", "pass either an auth token or a deploy key, not both")
    secret = token if token is not None else deploy_key
    if secret is None:
        return None
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not value.strip():
        raise InvalidInput("auth_token" if token is not None else "deploy_key", "must not be empty")
    return f"{'Bearer' if token is not None else 'Convex'} {value.strip()}"


def as_int(value: Any, what: str) -> int:
    """Convex numbers arrive as JSON floats (``3.0``); our models want ints where they are whole."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise TypeError(f"{what}: expected a whole number, got {value!r}")
    return int(value)


class ConvexClient:
    """Calls ``<namespace>:<function>`` on one Convex deployment over HTTP."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        authorization: str | None = None,
        timeout_s: float = 10.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise InvalidInput("timeout_s", "must be positive")
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_/.-]*", namespace):
            raise InvalidInput("namespace", f"{namespace!r} is not a Convex module path such as 'agentFactory'")
        self.url = normalize_url(url)
        if authorization:
            try:
                check_token_url(self.url)
            except ValueError as exc:
                raise InvalidInput("url", str(exc)) from None
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.retry = retry
        headers = {"Authorization": authorization} if authorization else {}
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout_s, transport=transport, follow_redirects=False
        )

    async def query(self, function: str, args: Mapping[str, Any], *, retry: bool = True) -> Any:
        return await self.call("query", function, args, retry=retry)

    async def mutation(self, function: str, args: Mapping[str, Any], *, retry: bool) -> Any:
        """``retry`` only for mutations that are fenced by a lease or idempotent."""
        return await self.call("mutation", function, args, retry=retry)

    async def call(self, kind: Kind, function: str, args: Mapping[str, Any], *, retry: bool) -> Any:
        """``retry``: the call may be repeated after any StoreUnavailable; otherwise only after
        NotCommitted (Convex refused it before it could commit)."""
        path = f"{self.namespace}:{function}"
        async for attempt in retrying(
            self.retry,
            retry=lambda exc: isinstance(exc, StoreUnavailable if retry else NotCommitted),
            event="convex call unavailable",
            context={"kind": kind, "function": path},
        ):
            with attempt:
                return await self._once(kind, path, args)
        raise AssertionError("unreachable: tenacity reraises the last error")  # pragma: no cover

    async def _once(self, kind: Kind, path: str, args: Mapping[str, Any]) -> Any:
        started = time.monotonic()
        try:
            reply = await self._http.post(f"/api/{kind}", json={"path": path, "args": dict(args), "format": "json"})
        except httpx.TransportError as exc:
            raise StoreUnavailable(self.url, f"{kind} {path}: {describe_transport_error(exc, self.timeout_s)}") from exc
        _log.debug(
            "convex call answered",
            kind=kind,
            function=path,
            status=reply.status_code,
            ms=round((time.monotonic() - started) * 1e3),
        )
        if reply.status_code in (200, UDF_FAILED):
            return self._envelope(path, reply)
        code, detail = _infra_detail(reply)
        if reply.status_code in REFUSED_STATUS and code is not None:
            raise NotCommitted(self.url, f"{kind} {path}: HTTP {reply.status_code} {detail}")
        if reply.status_code in RETRYABLE_STATUS or reply.status_code >= 500:
            raise StoreUnavailable(self.url, f"{kind} {path}: HTTP {reply.status_code} {detail}")
        raise StoreFunctionError(self.url, path, f"HTTP {reply.status_code} {detail}")

    def _envelope(self, path: str, reply: httpx.Response) -> Any:
        try:
            body = reply.json()
        except ValueError as exc:
            raise StoreFunctionError(self.url, path, "the reply was not JSON: is the URL a Convex deployment?") from exc
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            raise StoreFunctionError(self.url, path, "the reply was not a Convex function result")
        if body["status"] == "success":
            return body.get("value")
        raise self._function_error(path, body)

    def _function_error(self, path: str, body: Mapping[str, Any]) -> FactoryError:
        data = body.get("errorData")
        if isinstance(data, dict):
            typed = typed_error(data)
            if typed is not None:
                return typed
        message = _one_line(str(body.get("errorMessage") or "the function failed"))
        if isinstance(data, dict) and data.get("message"):
            message = _one_line(str(data["message"]))
        if "Could not find public function" in message:
            message += f" (is the factory module deployed with the namespace {self.namespace!r}?)"
        return StoreFunctionError(self.url, path, message)

    async def upload(self, upload_url: str, source: Path, content_type: str = "application/gzip") -> str:
        """POST a file to a storage upload URL of this deployment; returns its storage id."""
        target = self._same_origin(upload_url)
        data = await anyio.Path(source).read_bytes()
        try:
            reply = await self._http.post(target, content=data, headers={"Content-Type": content_type})
        except httpx.TransportError as exc:
            raise StoreUnavailable(self.url, f"upload: {describe_transport_error(exc, self.timeout_s)}") from exc
        if reply.status_code != 200:
            raise StoreUnavailable(self.url, f"upload: HTTP {reply.status_code} {_infra_detail(reply)[1]}")
        try:
            storage_id = reply.json()["storageId"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreFunctionError(self.url, "storage upload", "the reply had no storageId") from exc
        return str(storage_id)

    async def download(self, download_url: str, dest: Path) -> None:
        """GET a storage file of this deployment into ``dest``."""
        target = self._same_origin(download_url)
        try:
            async with self._http.stream("GET", target) as reply:
                if reply.status_code != 200:
                    raise StoreUnavailable(self.url, f"download: HTTP {reply.status_code}")
                async with await anyio.open_file(dest, "wb") as out:
                    async for chunk in reply.aiter_bytes(1 << 20):
                        await out.write(chunk)
        except httpx.TransportError as exc:
            raise StoreUnavailable(self.url, f"download: {describe_transport_error(exc, self.timeout_s)}") from exc

    def _same_origin(self, url: str) -> str:
        # Storage URLs come from the deployment; our auth header must never go anywhere else.
        mine, theirs = httpx.URL(self.url), httpx.URL(url)
        if (theirs.scheme, theirs.host, theirs.port) != (mine.scheme, mine.host, mine.port):
            raise StoreFunctionError(
                self.url, "storage", f"a storage URL on another origin ({theirs.host}) was refused"
            )
        return url

    async def aclose(self) -> None:
        await self._http.aclose()


def typed_error(data: Mapping[str, Any]) -> FactoryError | None:
    """The typed error for a ConvexError's data, as the SQLite store would raise it."""
    code = data.get("code")

    def text(key: str) -> str:
        return str(data.get(key) or "")

    if code == "INVALID_INPUT":
        field = text("field") or "input"
        return InvalidInput(field, text("message").removeprefix(f"{field}: ") or "invalid")
    if code == "AGENT_UNAVAILABLE":
        return AgentUnavailable(text("agentKey"), text("reason") or "unavailable")
    if code == "CONVERSATION_CONFLICT":
        return ConversationConflict(text("conversationId"), text("owner"), text("requested"))
    if code == "NOT_FOUND":
        return NotFound(text("what") or "record", text("key"))
    if code == "ACCESS_REFUSED":
        return AccessRefused(text("accountId"))
    return None


_REQUEST_ID = re.compile(r"^\[Request ID: [^\]]*\] Server Error\s*")


def _one_line(message: str) -> str:
    return " ".join(_REQUEST_ID.sub("", message).split())[:500]


def _infra_detail(reply: httpx.Response) -> tuple[str | None, str]:
    """Convex's infrastructure errors carry ``{"code", "message"}`` (code, detail); anything else
    (a proxy's page) has no code, and its reason phrase as the detail."""
    try:
        body = reply.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return body["code"], _one_line(f"{body['code']}: {body.get('message', '')}")
    return None, reply.reason_phrase or "error"


def describe_transport_error(exc: httpx.TransportError, timeout_s: float) -> str:
    """One line a human can act on: 'connection refused', 'no reply within 10s', …"""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connect timed out after {timeout_s:g}s"
    if isinstance(exc, httpx.TimeoutException):
        return f"no reply within {timeout_s:g}s (the call may or may not have run)"
    root = _os_error(exc)
    if root is not None and root.errno is not None and root.errno > 0:
        reason = os.strerror(root.errno).lower()  # "connection refused", "network is unreachable", …
    elif root is not None:
        reason = f"cannot resolve the host: {(root.strerror or str(root)).lower()}"  # getaddrinfo
    else:
        reason = _one_line(str(exc) or type(exc).__name__)
    return reason if isinstance(exc, httpx.ConnectError) else f"connection failed: {reason}"


def _os_error(exc: BaseException) -> OSError | None:
    """The OS-level error at the bottom of httpx's exception chain, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and isinstance(current.errno, int) and current.errno != 0:
            return current
        current = current.__cause__ or current.__context__
    return None
