"""Deliver a message through the gateway's OpenAI-compatible ``POST /v1/chat/completions``.

The session is chosen by the ``x-openclaw-session-key`` header (it wins over ``model``); the gateway
keeps the history, so each call carries only the new user message. ``model`` must still name the
agent (``openclaw/<agentId>``) when more than one agent is configured.

**Not idempotent.** This route has no idempotency key (an ``Idempotency-Key`` header is ignored:
two calls run the model twice), so a redelivered message runs another turn. Use ``WsDelivery``
where exactly-once matters; this route is the simple fallback.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import anyio
import httpx
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from contracts.redact import Redactor
from worker.delivery import DeliveryReply, DeliveryRequest
from worker.errors import (
    DeliveryAuthError,
    DeliveryError,
    DeliveryProtocolError,
    DeliveryRejected,
    DeliveryServerError,
    DeliveryTimeout,
    DeliveryUnavailable,
)
from worker.openclaw.sessions import SessionLocks

_log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_PROBE_TIMEOUT_S = 120.0
SESSION_HEADER = "x-openclaw-session-key"
_SESSION_PROBE_S = 30.0
PROBE_TEXT = "ping"


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    content: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    message: _Message


class _Completion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str | None = None
    choices: list[_Choice]


class HttpDelivery:
    """The ``Delivery`` over HTTP chat completions.

    ``base_url`` is the gateway's ``http://127.0.0.1:<port>``; ``token`` its shared gateway token.
    ``timeout_s`` bounds one ``deliver`` end to end. ``transport`` is for tests only.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"gateway url must start with http:// or https://, got {base_url!r}")
        secret = token if isinstance(token, SecretStr) else SecretStr(token)
        self._url = base_url.rstrip("/") + "/v1/chat/completions"
        self._tools_url = base_url.rstrip("/") + "/tools/invoke"
        self._redact = Redactor(secret)
        self._timeout_s = timeout_s
        self._probe_timeout_s = probe_timeout_s
        self._sessions = SessionLocks()
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {secret.get_secret_value()}"},
            # The total is bounded by fail_after in deliver(); httpx only bounds the connect.
            timeout=httpx.Timeout(None, connect=connect_timeout_s),
            # Loopback: never through a proxy taken from the environment.
            trust_env=False,
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def deliver(self, request: DeliveryRequest) -> DeliveryReply:
        if not request.text.strip():
            raise DeliveryRejected(f"message {request.message_id} has no text; the gateway rejects empty turns")
        body = {"model": f"openclaw/{request.agent_id}", "messages": [{"role": "user", "content": request.text}]}
        headers = {SESSION_HEADER: request.session_key}
        try:
            with anyio.fail_after(self._timeout_s):
                async with self._sessions.hold(request.session_key):
                    response = await self._post(body, headers, request.message_id)
        except TimeoutError:
            _log.warning("openclaw.http.timeout", message_id=request.message_id, timeout_s=self._timeout_s)
            raise DeliveryTimeout(
                f"no reply to message {request.message_id} from {self._url} within {self._timeout_s:g} s"
            ) from None
        if response.status_code != 200:
            raise _status_error(response, request.message_id).masked(self._redact)
        try:
            completion = _Completion.model_validate_json(response.content)
            content = completion.choices[0].message.content
        except (ValidationError, IndexError):
            raise DeliveryProtocolError(
                f"gateway answered message {request.message_id} with an unreadable completion "
                f"({response.headers.get('content-type', 'no content type')}, {len(response.content)} bytes)"
            ) from None
        return DeliveryReply(text=content or "", run_id=completion.id)

    async def has_session(self, agent_id: str, session_key: str) -> bool | None:
        """The ``sessions_history`` tool over ``POST /tools/invoke``: "No session found" means no."""
        body = {"tool": "sessions_history", "args": {"sessionKey": session_key, "limit": 1}, "agentId": agent_id}
        try:
            with anyio.fail_after(_SESSION_PROBE_S):
                response = await self._client.post(self._tools_url, json=body)
        except TimeoutError:
            raise DeliveryTimeout(f"gateway {self._tools_url} did not answer a session probe in time") from None
        except httpx.TransportError as exc:
            raise DeliveryUnavailable(self._redact(f"gateway {self._tools_url} unreachable: {exc!r}")) from None
        if response.status_code in {401, 403, 404} or not response.is_success:
            # No such tool here, or not for us: we cannot tell.
            return None
        try:
            details = response.json().get("result", {}).get("details", {})
        except (ValueError, AttributeError):
            return None
        if isinstance(details, dict) and details.get("status") == "error":
            # "No session found: <key>" is a clear no; any other error says nothing either way.
            return False if "no session found" in str(details.get("error", "")).lower() else None
        return True

    async def probe(self, agent_id: str | None = None) -> None:
        """Raise a DeliveryError unless the gateway takes us now: reachable and the token accepted (a
        request with no messages is refused as invalid only once it is authenticated); with
        ``agent_id``, also unless that agent answers a turn in its ``factory-probe`` session."""
        what = "probe" if agent_id is None else f"probe of agent {agent_id}"
        messages = [] if agent_id is None else [{"role": "user", "content": PROBE_TEXT}]
        body = {"model": f"openclaw/{agent_id or 'main'}", "messages": messages}
        headers = {SESSION_HEADER: f"agent:{agent_id or 'main'}:factory-probe"}
        try:
            with anyio.fail_after(self._probe_timeout_s):
                response = await self._post(body, headers, what)
        except TimeoutError:
            raise DeliveryTimeout(
                f"gateway {self._url} failed no probe, but passed none in {self._probe_timeout_s:g} s"
            ) from None
        if response.status_code in {401, 403} or response.status_code >= 500 or response.status_code in {408, 429}:
            raise _status_error(response, what).masked(self._redact)
        if agent_id is not None and response.status_code != 200:
            raise _status_error(response, what).masked(self._redact)

    async def _post(self, body: dict[str, Any], headers: dict[str, str], message_id: str) -> httpx.Response:
        try:
            return await self._client.post(self._url, json=body, headers=headers)
        except httpx.TimeoutException:  # only the connect phase has an httpx timeout
            raise DeliveryUnavailable(f"gateway {self._url} did not accept a connection in time") from None
        except httpx.TransportError as exc:
            raise DeliveryUnavailable(
                self._redact(f"gateway {self._url} unreachable for message {message_id}: {exc!r}")
            ) from None


def _status_error(response: httpx.Response, message_id: str) -> DeliveryError:
    status = response.status_code
    text = f"gateway answered message {message_id} with HTTP {status}"
    detail = _error_message(response)
    if detail:
        text += f": {detail}"
    if status in {401, 403}:
        return DeliveryAuthError(text)
    if status == 408:  # the gateway gave up on the model provider (~71 s of retries)
        return DeliveryTimeout(text)
    if status == 429 or status >= 500:
        return DeliveryServerError(text)
    if 400 <= status < 500:
        return DeliveryRejected(text)
    return DeliveryProtocolError(text)


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200].strip()
    error = data.get("error") if isinstance(data, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return str(message)[:300] if message else ""
