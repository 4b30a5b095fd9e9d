"""``/healthz``, ``/readyz`` and ``/metrics`` on a small HTTP port, served inside the caller's task group.

Usage::

    readiness = Readiness()
    server = HealthServer(readiness=readiness, metrics=metrics, host="127.0.0.1", port=0)
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        ...
        readiness.mark_registered()
        readiness.clear("gateway")                  # checked at start: now /readyz says 200
        readiness.fault("store", "connection refused")  # 503 while the store is out of reach
        readiness.clear("store")
        readiness.mark_draining()                   # and 503 again, for good

``/healthz`` is liveness: it answers 200 whenever the event loop can run this handler, so a wedged
loop fails the probe (an outage does not: the worker is alive and waiting it out). ``/readyz`` is
200 only while the worker is registered, nothing it depends on is at fault and it is not draining;
503 otherwise, with the reasons. HTTP parsing is h11's, one task per
connection under ``anyio``'s listener; no threads and no module-level state.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import anyio
import h11
import structlog
from anyio.abc import SocketAttribute, SocketStream, TaskStatus

from contracts.errors import InvalidInput
from worker.metrics import WorkerMetrics

_log = structlog.get_logger("worker.health")

# Probes and scrapers send tiny requests; anything larger is not one of them.
_MAX_REQUEST_BYTES = 16 * 1024
_JSON = "application/json"


class Readiness:
    """The worker's readiness, from what the worker loop knows: registered, the faults of what it
    depends on (the gateway until its first check passes), draining."""

    def __init__(self) -> None:
        self._registered = False
        self._faults: dict[str, str] = {"gateway": "not checked yet"}
        self._draining = False

    def mark_registered(self) -> None:
        self._registered = True

    def fault(self, component: str, reason: str) -> None:
        """``component`` (the gateway, the store) is unwell: not ready until it is cleared."""
        self._faults[component] = reason

    def clear(self, component: str) -> None:
        self._faults.pop(component, None)

    def mark_draining(self) -> None:
        # One way: a draining worker never becomes ready again, it exits.
        self._draining = True

    @property
    def ready(self) -> bool:
        return not self.reasons()

    def reasons(self) -> list[str]:
        """Why the worker is not ready; empty when it is."""
        reasons: list[str] = []
        if not self._registered:
            reasons.append("not registered with the store")
        reasons.extend(f"{component}: {reason}" for component, reason in self._faults.items())
        if self._draining:
            reasons.append("draining")
        return reasons


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()


class HealthServer:
    """An HTTP/1.1 server for the probes and the scrape; ``serve`` runs it until cancelled."""

    def __init__(
        self,
        *,
        readiness: Readiness,
        metrics: WorkerMetrics | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        read_timeout: float = 10.0,
        routes: Mapping[str, Callable[[], object]] | None = None,
    ) -> None:
        """``routes``: more GET paths, each answered 200 with the JSON of what its function returns."""
        if not 0 <= port <= 65535:
            raise ValueError(f"port: {port} is not a TCP port (0–65535; 0 picks a free one)")
        if read_timeout <= 0:
            raise ValueError(f"read_timeout: {read_timeout} must be positive")
        self.readiness = readiness
        self._metrics = metrics
        self._host = host
        self._requested_port = port
        self._read_timeout = read_timeout
        self._port: int | None = None
        self._routes: dict[str, Callable[[h11.Request], _Reply]] = {
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/metrics": self._metrics_page,
        }
        for path, view in (routes or {}).items():
            self._routes[path] = _json_route(view)

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0). Only after ``serve`` started."""
        if self._port is None:
            raise RuntimeError("the health server is not listening yet: start it with tg.start(server.serve)")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def serve(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen, report the bound port through ``task_status``, and serve until cancelled."""
        try:
            listener = await anyio.create_tcp_listener(local_host=self._host, local_port=self._requested_port)
        except OSError as exc:
            raise _cannot_listen(self._host, self._requested_port, exc) from None
        async with listener:
            self._port = int(listener.extra(SocketAttribute.local_port))
            _log.info("health.listening", host=self._host, port=self._port)
            task_status.started(self._port)
            try:
                await listener.serve(self._serve_connection)
            finally:
                self._port = None

    # ------------------------------------------------------------------ HTTP plumbing

    async def _serve_connection(self, stream: SocketStream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST_BYTES)
            try:
                while True:
                    with anyio.move_on_after(self._read_timeout):
                        request = await _read_request(conn, stream)
                    if request is None:
                        return  # closed by the client, or idle past the read timeout
                    await _send(conn, stream, self._respond(request), head=request.method == b"HEAD")
                    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                        return
                    conn.start_next_cycle()
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await _send(conn, stream, _text(400, "bad request\n"), head=False)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
                pass  # the client went away mid-answer; nothing to tell it
            except Exception:
                # A probe endpoint must never take the worker down: one bad connection is logged
                # and dropped, the listener (and the caller's task group) carry on.
                _log.exception("health.connection_failed")

    def _respond(self, request: h11.Request) -> _Reply:
        path = request.target.split(b"?", 1)[0].decode("ascii", errors="replace")
        route = self._routes.get(path)
        if route is None:
            return _text(404, f"not found: try {', '.join(self._routes)}\n")
        if request.method not in (b"GET", b"HEAD"):
            return _Reply(405, b"method not allowed\n", "text/plain; charset=utf-8", (("allow", "GET, HEAD"),))
        return route(request)

    # ------------------------------------------------------------------ routes

    def _healthz(self, _request: h11.Request) -> _Reply:
        return _Reply(200, _json({"status": "ok"}))

    def _readyz(self, _request: h11.Request) -> _Reply:
        reasons = self.readiness.reasons()
        return _Reply(200 if not reasons else 503, _json({"ready": not reasons, "reasons": reasons}))

    def _metrics_page(self, request: h11.Request) -> _Reply:
        if self._metrics is None:
            return _text(404, "metrics are not enabled on this worker\n")
        accept = next((value.decode("latin-1") for name, value in request.headers if name == b"accept"), None)
        body, content_type = self._metrics.exposition(accept)
        return _Reply(200, body, content_type)


def _cannot_listen(host: str, port: int, exc: OSError) -> InvalidInput:
    """One line naming the setting to change: a host that is not a local address, or a port in use."""
    reason = (exc.strerror or str(exc)).lower()
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return InvalidInput("FACTORY_HEALTH_HOST", f"cannot listen on {host!r} ({reason}); use a local address")
    return InvalidInput("FACTORY_HEALTH_PORT", f"cannot listen on {host}:{port} ({reason}); choose a free port")


async def _read_request(conn: h11.Connection, stream: SocketStream) -> h11.Request | None:
    """The next request with its body drained (we ignore bodies), or None once the client is gone."""
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                data = b""
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(conn: h11.Connection, stream: SocketStream, reply: _Reply, *, head: bool) -> None:
    headers = [
        ("content-type", reply.content_type),
        ("content-length", str(len(reply.body))),
        ("cache-control", "no-store"),
        *reply.headers,
    ]
    chunks = [conn.send(h11.Response(status_code=reply.status, headers=headers))]
    if not head:
        chunks.append(conn.send(h11.Data(data=reply.body)))
    chunks.append(conn.send(h11.EndOfMessage()))
    await stream.send(b"".join(chunk for chunk in chunks if chunk))


def _json_route(view: Callable[[], object]) -> Callable[[h11.Request], _Reply]:
    return lambda _request: _Reply(200, _json(view()))


def _json(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


def _text(status: int, text: str) -> _Reply:
    return _Reply(status, text.encode(), "text/plain; charset=utf-8")
