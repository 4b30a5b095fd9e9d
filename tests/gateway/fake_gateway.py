"""A loopback WebSocket server speaking just enough of the gateway protocol to misbehave on cue.

The real gateway cannot be made to send garbage or drop a socket mid-turn on demand; this stand-in
follows the frames observed on openclaw 2026.9.6 (challenge → connect → hello-ok → res frames) and
lets a test script what happens to each ``agent`` request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TOKEN = "fake-gateway-token-0123456789"

# Called for each request after the handshake, with the connection's 0-based index.
OnRequest = Callable[[ServerConnection, dict[str, Any], int], Awaitable[None]]


@dataclass
class FakeGateway:
    url: str
    connections: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    # The token it accepts now: a test may rotate it, as an operator restarting the gateway would.
    token: str = TOKEN
    sockets: set[ServerConnection] = field(default_factory=set)

    async def drop(self) -> None:
        """Close every open connection, as a gateway going away does."""
        for ws in list(self.sockets):
            await ws.close()


def res(request: dict[str, Any], *, ok: bool = True, payload: Any = None, error: Any = None) -> str:
    frame: dict[str, Any] = {"type": "res", "id": request["id"], "ok": ok}
    if payload is not None:
        frame["payload"] = payload
    if error is not None:
        frame["error"] = error
    return json.dumps(frame)


def final_ok(request: dict[str, Any], text: str) -> str:
    run_id = request["params"]["idempotencyKey"]
    payload = {"runId": run_id, "status": "ok", "result": {"payloads": [{"text": text}]}}
    return res(request, payload=payload)


async def answer_echo(ws: ServerConnection, request: dict[str, Any], connection: int) -> None:
    """What a healthy gateway does: accepted, a progress event, then the final reply."""
    run_id = request["params"]["idempotencyKey"]
    await ws.send(res(request, payload={"runId": run_id, "status": "accepted"}))
    await ws.send(json.dumps({"type": "event", "event": "agent", "payload": {"runId": run_id}}))
    await ws.send(final_ok(request, "echo: " + request["params"]["message"]))


@asynccontextmanager
async def fake_gateway(
    on_request: OnRequest = answer_echo,
    *,
    connect_error: dict[str, Any] | None = None,
    refuse_connects: int = 0,
    protocol: int = 4,
) -> AsyncIterator[FakeGateway]:
    """Serve on a free loopback port. ``refuse_connects`` first connects get ``connect_error``
    (default: the "still starting" UNAVAILABLE the real gateway sends); a bad token gets the real
    gateway's AUTH_TOKEN_MISMATCH."""
    state = FakeGateway(url="")

    async def handler(ws: ServerConnection) -> None:
        index = state.connections
        state.connections += 1
        await ws.send(json.dumps({"type": "event", "event": "connect.challenge", "payload": {"nonce": "n", "ts": 1}}))
        try:
            connect = json.loads(await ws.recv())
            if connect["params"]["auth"]["token"] != state.token:
                error = {
                    "code": "INVALID_REQUEST",
                    "message": "unauthorized: gateway token mismatch (provide gateway auth token)",
                    "details": {"code": "AUTH_TOKEN_MISMATCH"},
                }
                await ws.send(res(connect, ok=False, error=error))
                return
            if index < refuse_connects:
                starting = {"code": "UNAVAILABLE", "message": "gateway starting", "retryable": True, "retryAfterMs": 50}
                await ws.send(res(connect, ok=False, error=connect_error or starting))
                return
            await ws.send(res(connect, payload={"type": "hello-ok", "protocol": protocol}))
            state.sockets.add(ws)
            async for raw in ws:
                request = json.loads(raw)
                state.requests.append(request)
                if request.get("method") == "chat.history":
                    # This fake keeps no transcripts: every session it is asked about is empty.
                    await ws.send(res(request, payload={"messages": []}))
                    continue
                await on_request(ws, request, index)
        except ConnectionClosed:
            pass
        finally:
            state.sockets.discard(ws)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        state.url = f"ws://127.0.0.1:{port}/"
        yield state
