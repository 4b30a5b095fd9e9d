"""Deliver a message through the gateway's WebSocket ``agent`` RPC: the idempotent route.

The queue message id travels as the RPC's ``idempotencyKey``, so a redelivered message does not
run the model again: the gateway answers from its dedupe cache, or, if the first run is still
going, says ``in_flight`` and we wait for that run (``agent.wait``) instead of starting another.

What the gateway guarantees, and what it does not (openclaw 2026.9.6):

* The dedupe cache lives in the gateway process's memory for 5 minutes (1000 entries). After a
  restart, or later than that, the same key runs the model again.
* A *failed* run is cached too: re-sending its key would replay the failure for 5 minutes and
  burn the queue's attempts. So once a run has failed, this client derives a fresh key for the
  next attempt of that message (``<message id>~<n>``). This memory is per process.
* A gateway that dies mid-turn and starts again has lost the run, not the session: when it says so
  (``DeliveryInterrupted``), this client reads the session (``chat.history``) and adopts the reply
  of the gateway's own recovery run, or sends the message under a fresh key if it never reached the
  transcript (:mod:`worker.openclaw.recovery`). Each message then gets one reply and one turn.

One persistent socket carries every request; responses are matched by request id, so turns for
different sessions run concurrently. Turns for one session run one at a time (``SessionLocks``).
The socket is opened on first use and again after it drops. Its reader runs in the task group this
object owns, so use it as ``async with WsDelivery(...) as delivery:``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, Self

import anyio
import structlog
import websockets
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI, WebSocketException

from contracts.redact import Redactor
from worker.delivery import DeliveryReply, DeliveryRequest
from worker.errors import (
    DeliveryAuthError,
    DeliveryConfigError,
    DeliveryError,
    DeliveryInterrupted,
    DeliveryProtocolError,
    DeliveryRejected,
    DeliveryServerError,
    DeliveryTimeout,
    DeliveryUnavailable,
)
from worker.openclaw.frames import (
    PROTOCOL_VERSION,
    AgentFinal,
    EventFrame,
    HelloOk,
    ResFrame,
    SessionHistory,
    WaitResult,
    error_from_frame,
    interrupted_by_restart,
    parse_frame,
    parse_payload,
)
from worker.openclaw.recovery import TurnState, key_number, turn_state
from worker.openclaw.sessions import SessionLocks

_log = structlog.get_logger(__name__)

DEFAULT_TIMEOUT_S = 300.0
# The reference gateway client's pre-auth budget; the gateway closes slower handshakes itself.
DEFAULT_CONNECT_TIMEOUT_S = 15.0
# Direct-loopback backend clients may authenticate with the shared token alone (no device
# identity); other client ids are meant to sign the challenge with a paired device key.
_CLIENT = {"id": "gateway-client", "version": "0.1.0", "platform": "linux", "mode": "backend"}
_SCOPES = ["operator.read", "operator.write"]
_WAIT_SLICE_MS = 60_000
_FAILED_KEYS_REMEMBERED = 1_000  # like the gateway's own dedupe cache
_SESSION_PROBE_S = 30.0
# A gateway without the method, or that does not let us use it: we cannot tell, and do not seed.
_CANNOT_TELL = frozenset({"INVALID_REQUEST", "METHOD_NOT_FOUND", "FORBIDDEN", "UNAUTHORIZED"})
# Recovery: how much of a session to read (our turn, the restart notice, the recovery run's
# entries), how often to look again while the gateway has not resumed the turn yet, and how long
# to leave it the chance before sending the message under a fresh key after all.
_HISTORY_LIMIT = 24
_RECOVERY_POLL_S = 1.0
_RECOVERY_GRACE_S = 120.0
DEFAULT_PROBE_TIMEOUT_S = 120.0
PROBE_TEXT = "ping"


class _Connection:
    """One authenticated socket and the requests waiting on it."""

    def __init__(self, ws: ClientConnection, redact: Redactor) -> None:
        self._ws = ws
        self._redact = redact
        self._waiters: dict[str, MemoryObjectSendStream[ResFrame]] = {}
        self.failure: DeliveryError | None = None

    @property
    def usable(self) -> bool:
        return self.failure is None

    async def read(self) -> None:
        """Route responses to their waiters until the socket ends. Never raises: the reason the
        socket ended is handed to every waiter instead, and the next delivery reconnects."""
        failure: DeliveryError = DeliveryUnavailable("gateway connection closed")
        try:
            async for raw in self._ws:
                frame = parse_frame(raw)
                if isinstance(frame, ResFrame):
                    waiter = self._waiters.get(frame.id)
                    # No waiter: its caller timed out or was cancelled; the frame has no reader.
                    if waiter is not None:
                        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                            waiter.send_nowait(frame)
                elif isinstance(frame, EventFrame) and frame.event == "shutdown":
                    failure = DeliveryUnavailable("gateway is shutting down")
        except ConnectionClosed as exc:
            failure = DeliveryUnavailable(f"gateway connection lost ({_close_reason(exc)})")
        except DeliveryError as exc:
            failure = exc
        except (OSError, WebSocketException) as exc:
            failure = DeliveryUnavailable(self._redact(f"gateway connection failed: {exc!r}"))
        except Exception as exc:  # a bug in this loop must fail the deliveries, not the whole worker
            _log.exception("openclaw.ws.reader_failed")
            failure = DeliveryProtocolError(f"gateway reader failed: {type(exc).__name__}")
        finally:
            self.failure = failure
            for waiter in self._waiters.values():
                waiter.close()
            with anyio.CancelScope(shield=True):
                await self._ws.close()

    @asynccontextmanager
    async def request(self, method: str, params: dict[str, Any]) -> AsyncIterator[MemoryObjectReceiveStream[ResFrame]]:
        """Send one request; the stream yields every ``res`` frame for it (``agent`` sends two)."""
        if self.failure is not None:
            raise self.failure.copy()
        request_id = uuid.uuid4().hex
        # A few frames at most per request; the buffer only absorbs a slow consumer.
        send, receive = anyio.create_memory_object_stream[ResFrame](8)
        self._waiters[request_id] = send
        try:
            try:
                await self._ws.send(json.dumps({"type": "req", "id": request_id, "method": method, "params": params}))
            except ConnectionClosed as exc:
                raise DeliveryUnavailable(f"gateway connection lost ({_close_reason(exc)})") from None
            with receive:
                yield receive
        finally:
            del self._waiters[request_id]
            send.close()

    async def next_response(self, frames: MemoryObjectReceiveStream[ResFrame]) -> ResFrame:
        try:
            return await frames.receive()
        except anyio.EndOfStream:
            raise (self.failure or DeliveryUnavailable("gateway connection closed")).copy() from None

    async def ping(self) -> None:
        """A WebSocket ping answered: the gateway behind this socket is alive now."""
        try:
            await (await self._ws.ping())
        except ConnectionClosed as exc:
            raise DeliveryUnavailable(f"gateway connection lost ({_close_reason(exc)})") from None

    async def aclose(self) -> None:
        await self._ws.close()


class WsDelivery:
    """The ``Delivery`` over the gateway's WebSocket RPC.

    ``url`` is the gateway's ``ws://127.0.0.1:<port>/``; ``token`` its shared gateway token.
    ``timeout_s`` bounds one ``deliver`` end to end (waiting for the session's turn included).
    """

    def __init__(
        self,
        url: str,
        token: SecretStr | str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S,
        recovery_grace_s: float = _RECOVERY_GRACE_S,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"gateway url must start with ws:// or wss://, got {url!r}")
        self._url = url
        self._probe_timeout_s = probe_timeout_s
        self._recovery_grace_s = recovery_grace_s
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        self._redact = Redactor(self._token)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._sessions = SessionLocks()
        self._connect_lock = anyio.Lock()
        self._connection: _Connection | None = None
        self._failed_runs: OrderedDict[str, int] = OrderedDict()
        self._stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self.protocol: int | None = None

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        self._task_group = await stack.enter_async_context(anyio.create_task_group())
        self._stack = stack
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        stack, self._stack, self._task_group = self._stack, None, None
        if self._connection is not None:
            await self._connection.aclose()
        if stack is not None:
            await stack.aclose()

    async def deliver(self, request: DeliveryRequest) -> DeliveryReply:
        if not request.text.strip():
            raise DeliveryRejected(f"message {request.message_id} has no text; the gateway rejects empty turns")
        params = {
            "message": request.text,
            "agentId": request.agent_id,
            "sessionKey": request.session_key,
            "idempotencyKey": self._idempotency_key(request.message_id),
        }
        log = _log.bind(message_id=request.message_id, session_key=request.session_key)
        started = anyio.current_time()
        try:
            with anyio.fail_after(self._timeout_s):
                async with self._sessions.hold(request.session_key):
                    try:
                        reply = await self._run(await self._connect(), params, request.message_id)
                    except DeliveryInterrupted as exc:
                        log.warning("openclaw.ws.interrupted", error=str(exc))
                        reply = await self._recover(request, params)
                    except DeliveryServerError:
                        # A gateway restarted since this message's run finished has forgotten the key,
                        # and refuses a second turn keyed like the first ("Session transcript keyed
                        # user is outside the current turn"): the answer is already in the session.
                        earlier = await self._finished_earlier(request)
                        if earlier is None:
                            raise
                        reply = earlier
        except TimeoutError:
            log.warning("openclaw.ws.timeout", timeout_s=self._timeout_s)
            raise DeliveryTimeout(
                f"no reply to message {request.message_id} from {self._url} within {self._timeout_s:g} s"
            ) from None
        log.debug("openclaw.ws.delivered", seconds=round(anyio.current_time() - started, 3))
        return reply

    async def has_session(self, agent_id: str, session_key: str) -> bool | None:
        """``sessions.describe``: ``{session: null}`` for a key the gateway has never seen."""
        try:
            with anyio.fail_after(self._connect_timeout_s + _SESSION_PROBE_S):
                connection = await self._connect()
                async with connection.request("sessions.describe", {"key": session_key}) as frames:
                    frame = await connection.next_response(frames)
        except TimeoutError:
            raise DeliveryTimeout(f"gateway {self._url} did not describe session {session_key} in time") from None
        if not frame.ok:
            error = frame.error
            if error is not None and error.code in _CANNOT_TELL:
                return None
            raise error_from_frame(error, f"describing session {session_key}").masked(self._redact)
        payload = frame.payload if isinstance(frame.payload, dict) else {}
        return payload.get("session") is not None

    async def probe(self, agent_id: str | None = None) -> None:
        """Raise a DeliveryError unless the gateway takes us now: reachable, token accepted, socket
        alive; with ``agent_id``, also unless that agent runs a turn (one model call, in its own
        ``factory-probe`` session)."""
        try:
            with anyio.fail_after(self._probe_timeout_s):
                connection = await self._connect()
                await connection.ping()
                if agent_id is not None:
                    params = {
                        "message": PROBE_TEXT,
                        "agentId": agent_id,
                        "sessionKey": f"agent:{agent_id}:factory-probe",
                        "idempotencyKey": f"factory-probe-{uuid.uuid4().hex}",
                    }
                    await self._run(connection, params, f"probe of agent {agent_id}")
        except TimeoutError:
            raise DeliveryTimeout(
                f"gateway {self._url} failed no probe, but passed none in {self._probe_timeout_s:g} s"
            ) from None

    def _idempotency_key(self, message_id: str) -> str:
        failures = self._failed_runs.get(message_id, 0)
        return message_id if failures == 0 else f"{message_id}~{failures}"

    def _remember_failure(self, message_id: str, *, at_least: int = 0) -> None:
        self._failed_runs[message_id] = max(self._failed_runs.pop(message_id, 0) + 1, at_least)
        while len(self._failed_runs) > _FAILED_KEYS_REMEMBERED:
            self._failed_runs.popitem(last=False)

    async def _recover(self, request: DeliveryRequest, params: dict[str, Any]) -> DeliveryReply:
        """The gateway lost this message's run in a restart: find its turn in the session and adopt the
        reply of whichever run answers it, or send it under a fresh key if it never reached the
        transcript. Bounded by ``deliver``'s timeout."""
        log = _log.bind(message_id=request.message_id, session_key=request.session_key)
        since = anyio.current_time()
        while True:
            connection = await self._connect()
            state = await self._turn(connection, request)
            if state.reply_text is not None:
                log.info("openclaw.ws.recovered", run_id=state.reply_run, how="transcript")
                return DeliveryReply(text=state.reply_text, run_id=state.reply_run)
            if state.reply_run is not None and key_number(state.reply_run, request.message_id) is None:
                try:
                    reply = await self._wait(connection, state.reply_run, request.message_id)
                except (DeliveryServerError, DeliveryInterrupted) as exc:
                    log.warning("openclaw.ws.recovery_run_failed", run_id=state.reply_run, error=str(exc))
                else:
                    log.info("openclaw.ws.recovered", run_id=state.reply_run, how="recovery run")
                    return reply
            elif state.taken and anyio.current_time() - since < self._recovery_grace_s:
                # The gateway holds our turn (resuming it after its start, or a run still going): wait.
                await anyio.sleep(_RECOVERY_POLL_S)
                continue
            self._remember_failure(request.message_id, at_least=key_number(state.fresh_key, request.message_id) or 0)
            log.info("openclaw.ws.resending", key=state.fresh_key, taken=state.taken)
            try:
                return await self._run(connection, {**params, "idempotencyKey": state.fresh_key}, request.message_id)
            except DeliveryInterrupted:
                continue  # restarted again meanwhile: read the session again

    async def _finished_earlier(self, request: DeliveryRequest) -> DeliveryReply | None:
        """The reply of a run of this message the session transcript already holds, if any."""
        state = await self._turn(await self._connect(), request)
        if state.reply_text is None:
            return None
        log = _log.bind(message_id=request.message_id, session_key=request.session_key)
        log.info("openclaw.ws.recovered", run_id=state.reply_run, how="finished earlier")
        return DeliveryReply(text=state.reply_text, run_id=state.reply_run)

    async def _turn(self, connection: _Connection, request: DeliveryRequest) -> TurnState:
        """Where this message's turn stands in the session transcript."""
        history = await self._history(connection, request.session_key, _HISTORY_LIMIT)
        return turn_state(history, request.message_id, keys_used=self._failed_runs.get(request.message_id, 0))

    async def history(self, session_key: str, limit: int = 100) -> SessionHistory:
        """The newest ``limit`` entries of a session's transcript (``chat.history``), oldest first."""
        return await self._history(await self._connect(), session_key, limit)

    async def _history(self, connection: _Connection, session_key: str, limit: int) -> SessionHistory:
        params = {"sessionKey": session_key, "limit": limit}
        async with connection.request("chat.history", params) as frames:
            frame = await connection.next_response(frames)
        if not frame.ok:
            raise error_from_frame(frame.error, f"chat.history of {session_key}").masked(self._redact)
        return parse_payload(SessionHistory, frame.payload, "chat.history result")

    async def _run(self, connection: _Connection, params: dict[str, Any], message_id: str) -> DeliveryReply:
        doing = f"agent run for message {message_id}"
        frame = await self._final_frame(connection, params)
        if frame.ok and frame.status == "in_flight":
            # An earlier delivery of this message is still running: wait for it, don't start another.
            run_id = frame.payload.get("runId") if isinstance(frame.payload, dict) else None
            return await self._wait(connection, str(run_id or params["idempotencyKey"]), message_id)
        if not frame.ok:
            if frame.status is not None:  # the run started and failed; the gateway cached that
                self._remember_failure(message_id)
            raise error_from_frame(frame.error, doing).masked(self._redact)
        final = parse_payload(AgentFinal, frame.payload, f"{doing} result")
        if final.status == "ok":
            return DeliveryReply(text=final.reply_text(), run_id=final.run_id)
        self._remember_failure(message_id)
        summary = self._redact((final.summary or "")[:300])
        if interrupted_by_restart(summary):
            raise DeliveryInterrupted(f"gateway {doing} ended {final.status}: {summary}")
        if final.status == "timeout":
            raise DeliveryTimeout(f"gateway timed out the {doing}: {summary}")
        raise DeliveryServerError(f"gateway {doing} ended {final.status}: {summary}")

    @staticmethod
    async def _final_frame(connection: _Connection, params: dict[str, Any]) -> ResFrame:
        async with connection.request("agent", params) as frames:
            while True:
                frame = await connection.next_response(frames)
                if not (frame.ok and frame.status == "accepted"):
                    return frame

    async def _wait(self, connection: _Connection, run_id: str, message_id: str) -> DeliveryReply:
        doing = f"wait for the run of message {message_id}"
        while True:  # bounded by deliver()'s fail_after
            async with connection.request("agent.wait", {"runId": run_id, "timeoutMs": _WAIT_SLICE_MS}) as frames:
                frame = await connection.next_response(frames)
            if not frame.ok:
                raise error_from_frame(frame.error, doing).masked(self._redact)
            result = parse_payload(WaitResult, frame.payload, f"{doing} result")
            if result.status == "timeout":
                continue
            if result.status == "ok":
                reply = result.terminal_reply.text if result.terminal_reply else None
                return DeliveryReply(text=reply or "", run_id=run_id)
            self._remember_failure(message_id)
            why = self._redact(f"gateway run of message {message_id} ended {result.status}: {result.error or ''}"[:500])
            raise DeliveryInterrupted(why) if interrupted_by_restart(why) else DeliveryServerError(why)

    async def _connect(self) -> _Connection:
        async with self._connect_lock:
            if self._connection is not None and self._connection.usable:
                return self._connection
            if self._task_group is None:
                raise RuntimeError("WsDelivery is not open: use `async with WsDelivery(...) as delivery:`")
            connection = None
            with anyio.move_on_after(self._connect_timeout_s):
                connection = await self._handshake()
            if connection is None:
                raise DeliveryUnavailable(
                    f"gateway {self._url} did not complete the handshake within {self._connect_timeout_s:g} s"
                )
            self._connection = connection
            self._task_group.start_soon(connection.read, name="openclaw-ws-reader")
            return connection

    async def _handshake(self) -> _Connection:
        """Open a socket and authenticate; retries while the gateway reports it is still starting."""
        while True:
            ws = await self._open_socket()
            try:
                retry_after_s = await self._authenticate(ws)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await ws.close()
                raise
            if retry_after_s is None:
                return _Connection(ws, self._redact)
            await ws.close()
            await anyio.sleep(retry_after_s)

    async def _open_socket(self) -> ClientConnection:
        try:
            return await websockets.connect(
                self._url,
                # Loopback: never through an HTTP proxy from the environment, never compressed
                # (the gateway does not negotiate permessage-deflate anyway).
                proxy=None,
                compression=None,
                open_timeout=None,  # the caller's fail_after bounds the whole handshake
                max_size=32 << 20,  # above the gateway's 25 MiB maxPayload
                max_queue=64,
                user_agent_header="factory-worker",
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in {401, 403}:
                raise DeliveryAuthError(f"gateway {self._url} refused the WebSocket upgrade: HTTP {status}") from None
            raise DeliveryUnavailable(f"gateway {self._url} refused the WebSocket upgrade: HTTP {status}") from None
        except InvalidHandshake as exc:
            raise DeliveryProtocolError(f"gateway {self._url} WebSocket handshake failed: {exc}") from None
        except InvalidURI as exc:
            raise DeliveryConfigError(f"gateway URL {self._url!r} is not a WebSocket URL: {exc}") from None
        except OSError as exc:
            raise DeliveryUnavailable(f"cannot connect to gateway {self._url}: {exc.strerror or exc!r}") from None

    async def _authenticate(self, ws: ClientConnection) -> float | None:
        """Challenge → connect → hello-ok. Returns seconds to wait before retrying, or None when in."""
        try:
            await self._expect_challenge(ws)
            connect_id = uuid.uuid4().hex
            params = {
                "minProtocol": PROTOCOL_VERSION,
                "maxProtocol": PROTOCOL_VERSION,
                "client": _CLIENT,
                "role": "operator",
                "scopes": _SCOPES,
                "caps": [],
                "commands": [],
                "permissions": {},
                "auth": {"token": self._token.get_secret_value()},
            }
            await ws.send(json.dumps({"type": "req", "id": connect_id, "method": "connect", "params": params}))
            while True:
                frame = parse_frame(await ws.recv())
                if isinstance(frame, ResFrame) and frame.id == connect_id:
                    break
        except ConnectionClosed as exc:
            raise DeliveryUnavailable(
                f"gateway {self._url} closed during the handshake ({_close_reason(exc)})"
            ) from None
        if not frame.ok:
            error = frame.error
            if error is not None and error.code == "UNAVAILABLE" and error.retryable:
                return (error.retry_after_ms or 500) / 1000
            raise error_from_frame(error, f"the connect handshake with {self._url}").masked(self._redact)
        hello = parse_payload(HelloOk, frame.payload, "hello-ok")
        if hello.protocol != PROTOCOL_VERSION:
            raise DeliveryProtocolError(
                f"gateway {self._url} negotiated protocol {hello.protocol}, not {PROTOCOL_VERSION}"
            )
        self.protocol = hello.protocol
        return None

    async def _expect_challenge(self, ws: ClientConnection) -> None:
        frame = parse_frame(await ws.recv())
        if not (isinstance(frame, EventFrame) and frame.event == "connect.challenge"):
            raise DeliveryProtocolError(f"gateway {self._url} did not open with a connect.challenge event")


def _close_reason(exc: ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "no close frame"
    return f"code {close.code}" + (f" {close.reason}" if close.reason else "")
