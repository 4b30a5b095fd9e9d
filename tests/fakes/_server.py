"""A loopback HTTP server with per-endpoint counters and fault injection, shared by the fakes.

Real sockets, real HTTP: the server runs ``http.server`` in a background thread bound to
127.0.0.1 on a free port, so the code under test uses its production HTTP stack unchanged.

Faults are queued per endpoint name (``"create"``, ``"list"``, ...) and consumed in order by the
next matching requests, after the auth check (a platform authenticates before it does anything):

- ``status``: answer with a status, body and headers instead of doing the work (429, 5xx, 409...);
- ``timeout``: optionally do the work, then stall for ``delay_s`` (past the client's timeout);
- ``drop``: do the work, then close the connection without a response ("response lost");
- ``lost_504``: do the work, then answer 504 as a gateway that gave up would.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

FaultKind = Literal["status", "timeout", "drop", "lost_504"]


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 500
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    # For "timeout": whether the work is done before the stall (the server got it, the client gave up).
    commit: bool = True


@dataclass
class Request:
    """One parsed request, handed to the fake's route."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class FaultyServer:
    """Base for the fakes: subclasses implement ``endpoint``, ``authorized`` and ``route``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.counts: Counter[str] = Counter()
        self.log: list[tuple[str, str, str, int | None]] = []
        self._faults: dict[str, deque[Fault]] = {}
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        handler = _handler_for(self)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        # A short poll interval keeps stop() (and so every test's teardown) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers stalled by a "timeout" fault
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- fault injection ------------------------------------------------------------------------

    def inject(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        with self.lock:
            queue = self._faults.setdefault(endpoint, deque())
            queue.extend([fault] * times)

    def fail_next(
        self,
        endpoint: str,
        status: int,
        *,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.inject(endpoint, Fault("status", status=status, body=body, headers=headers or {}), times)

    def timeout_next(self, endpoint: str, *, delay_s: float, commit: bool = True, times: int = 1) -> None:
        self.inject(endpoint, Fault("timeout", delay_s=delay_s, commit=commit), times)

    def lose_response_next(self, endpoint: str, *, mode: Literal["drop", "lost_504"] = "drop", times: int = 1) -> None:
        self.inject(endpoint, Fault(mode), times)

    def pending_faults(self, endpoint: str) -> int:
        with self.lock:
            return len(self._faults.get(endpoint, ()))

    def count(self, endpoint: str) -> int:
        with self.lock:
            return self.counts[endpoint]

    # -- for subclasses -------------------------------------------------------------------------

    def endpoint(self, method: str, path: str) -> str | None:
        """The endpoint name for counters and faults, or None for an unknown route (404)."""
        raise NotImplementedError

    def authorized(self, request: Request) -> Response | None:
        """None when the request may proceed, else the platform's auth failure."""
        raise NotImplementedError

    def route(self, endpoint: str, request: Request) -> Response:
        raise NotImplementedError

    def not_found(self, request: Request) -> Response:
        return Response(404, {"error": "not found"})

    def server_error(self, status: int) -> Any:
        return {"error": "internal error"}

    def extra_headers(self) -> dict[str, str]:
        return {}

    # -- dispatch (runs in the handler thread) --------------------------------------------------

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        request = _parse(handler)
        endpoint = self.endpoint(request.method, request.path)
        if endpoint is None:
            _write(handler, self.not_found(request), self.extra_headers())
            return
        with self.lock:
            self.counts[endpoint] += 1
        denied = self.authorized(request)
        if denied is not None:
            self._record(request, endpoint, denied.status)
            _write(handler, denied, self.extra_headers())
            return
        with self.lock:
            queue = self._faults.get(endpoint)
            fault = queue.popleft() if queue else None
        if fault is None:
            response = self._route(endpoint, request)
        elif fault.kind == "status":
            body = fault.body if fault.body is not None else self.server_error(fault.status)
            response = Response(fault.status, body, dict(fault.headers))
        elif fault.kind == "timeout":
            if fault.commit:
                self._route(endpoint, request)
            self._stopping.wait(fault.delay_s)
            response = Response(504, self.server_error(504))
        elif fault.kind == "drop":
            self._route(endpoint, request)
            self._record(request, endpoint, None)
            handler.close_connection = True
            return
        else:  # lost_504
            self._route(endpoint, request)
            response = Response(504, self.server_error(504))
        self._record(request, endpoint, response.status)
        _write(handler, response, self.extra_headers())

    def _route(self, endpoint: str, request: Request) -> Response:
        with self.lock:
            return self.route(endpoint, request)

    def _record(self, request: Request, endpoint: str, status: int | None) -> None:
        with self.lock:
            self.log.append((request.method, request.path, endpoint, status))


def _handler_for(fake: FaultyServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            fake._dispatch(self)

        do_POST = do_GET
        do_DELETE = do_GET
        do_PUT = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


def _parse(handler: BaseHTTPRequestHandler) -> Request:
    split = urlsplit(handler.path)
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return Request(
        method=handler.command,
        path=split.path.rstrip("/") or "/",
        query=parse_qs(split.query),
        headers={key.lower(): value for key, value in handler.headers.items()},
        body=body,
    )


def _write(handler: BaseHTTPRequestHandler, response: Response, extra: dict[str, str]) -> None:
    payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
    try:
        handler.send_response(response.status)
        for key, value in {**extra, **response.headers}.items():
            handler.send_header(key, value)
        if payload:
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        # One request per connection: no keep-alive races between a test's faults and the pool.
        handler.send_header("Connection", "close")
        handler.end_headers()
        if payload:
            handler.wfile.write(payload)
        handler.close_connection = True
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (a "timeout" fault); nothing to tell it
