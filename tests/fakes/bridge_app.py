"""A loopback fake of an app's agent bridge: ``POST {baseUrl}/agent/execute``, as upstream's bridge calls it.

It checks what agent-factory's ``executeBridgeFunction`` sends: ``X-Agent-Service-Id`` and
``X-Agent-Service-Key`` (wrong → 401), ``X-Agent-App``, and a JSON body ``{functionKey, args}``.
Functions: ``tasks.list`` answers ``{success: true, result: [...]}``, ``echo`` answers its args;
an unknown function is 404 ``{success: false, error}``. Routes under ``/moved/…`` redirect
(307) to the same path without the prefix; ``/away/…`` redirects to ``redirect_to`` (another
origin). Faults come from :class:`tests.fakes._server.FaultyServer` (``fail_next("execute", 429,
headers={"Retry-After": "1"})``, 503, …). Every call is kept in ``calls``.
"""

from __future__ import annotations

from typing import Any

from tests.fakes._server import FaultyServer, Request, Response

SERVICE_ID = "svc-factory"
SERVICE_KEY = "bridge-service-key-0123456789"
TASKS = [{"id": 1, "title": "water the plants"}, {"id": 2, "title": "call mum"}]


class BridgeApp(FaultyServer):
    def __init__(self, *, redirect_to: str = "http://127.0.0.2:9") -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.redirect_to = redirect_to

    def endpoint(self, method: str, path: str) -> str | None:
        if method != "POST" or not path.endswith("/agent/execute"):
            return None
        if path.startswith("/moved/"):
            return "moved"
        if path.startswith("/away/"):
            return "away"
        return "execute"

    def authorized(self, request: Request) -> Response | None:
        headers = request.headers
        if headers.get("x-agent-service-id") != SERVICE_ID or headers.get("x-agent-service-key") != SERVICE_KEY:
            return Response(401, {"success": False, "error": "unauthorized"})
        return None

    def route(self, endpoint: str, request: Request) -> Response:
        if endpoint == "moved":
            return Response(307, None, {"Location": request.path.removeprefix("/moved")})
        if endpoint == "away":
            return Response(307, None, {"Location": self.redirect_to + request.path.removeprefix("/away")})
        body = request.body if isinstance(request.body, dict) else {}
        self.calls.append({"app": request.headers.get("x-agent-app"), **body})
        function, args = body.get("functionKey"), body.get("args")
        if function == "tasks.list":
            return Response(200, {"success": True, "result": TASKS})
        if function == "echo":
            return Response(200, {"success": True, "result": args})
        return Response(404, {"success": False, "error": f"unknown function {function!r}"})
