"""Subscriptions over Convex's WebSocket sync protocol (``/api/sync``), for a worker that waits.

An idle worker subscribes to the module's ``queueSignal`` query for as long as it waits, and
wakes when a new value arrives (a head appeared or moved) or when the head it names falls due:
nothing is polled, and each update is one evaluation of a two-read query. The subset of the
protocol spoken here (reference/convex.md §2.8)::

    → Connect {sessionId, connectionCount, lastCloseReason, clientTs}   once per connection
    → Authenticate {tokenType: User | Admin, value, baseVersion}        when the store has credentials
    → ModifyQuerySet {baseVersion, newVersion, modifications: [Add {queryId, udfPath, args} | Remove {queryId}]}
    ← Transition {startVersion, endVersion, modifications: [QueryUpdated {queryId, value} | QueryFailed | …]}
    ← Ping, AuthError, FatalError

One connection per store, opened at its first wait and kept while it works. A subscription lives
only while its wait does, so a busy worker is sent nothing but the deployment's pings. Anything
wrong with the socket raises :class:`SyncUnavailable`, and the store polls meanwhile. Nothing here
logs tokens, arguments or values.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from contracts.convex.client import typed_error
from contracts.errors import FactoryError, StoreFunctionError, StoreUnavailable


class SyncUnavailable(StoreUnavailable):
    """The sync WebSocket cannot be used now (refused, closed, silent); polling still works."""


class StoreClock:
    """The deployment's clock, estimated from the last answer that carried it: no call needed."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._seen: tuple[int, float] | None = None

    def saw(self, store_ms: int) -> None:
        self._seen = (store_ms, self._monotonic())

    def now_ms(self) -> int | None:
        if self._seen is None:
            return None
        store_ms, at = self._seen
        return store_ms + int((self._monotonic() - at) * 1000)


def sync_url(url: str) -> str:
    """``https://x.convex.cloud`` → ``wss://x.convex.cloud/api/sync`` (http → ws on loopback)."""
    scheme, rest = url.split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/api/sync"


class Watch:
    """One subscription: ``await next()`` gives its first value, then each changed one."""

    def __init__(self, sync: ConvexSync, ws: ClientConnection, query_id: int, udf_path: str) -> None:
        self._sync, self._ws, self._id, self._path = sync, ws, query_id, udf_path

    async def next(self) -> Any:
        while True:
            frame = await self._sync.receive(self._ws)
            if frame.get("type") != "Transition":
                continue
            for change in frame.get("modifications") or []:
                if change.get("queryId") != self._id:
                    continue
                if change.get("type") == "QueryUpdated":
                    return change.get("value")
                if change.get("type") == "QueryFailed":
                    raise self._failure(change)

    def _failure(self, change: Mapping[str, Any]) -> FactoryError:
        data = change.get("errorData")
        typed = typed_error(data) if isinstance(data, dict) else None
        if typed is not None:
            return typed
        message = " ".join(str(change.get("errorMessage") or "the query failed").split())[:500]
        return StoreFunctionError(self._sync.url, self._path, message)


class ConvexSync:
    """A deployment's ``/api/sync`` endpoint, for subscriptions that last as long as a wait."""

    def __init__(self, url: str, *, authorization: str | None, timeout_s: float) -> None:
        self.url = url
        self._ws_url = sync_url(url)
        self._authorization = authorization
        self._timeout_s = timeout_s
        self._ws: ClientConnection | None = None
        self._session = str(uuid.uuid4())
        self._connections = 0
        self._query_set = 0
        self._next_query = 0

    @asynccontextmanager
    async def watch(self, udf_path: str, args: Mapping[str, Any]) -> AsyncIterator[Watch]:
        """Subscribe to ``udf_path(args)`` for the body of the ``async with``."""
        ws = await self._connected()
        query_id = self._next_query
        self._next_query += 1
        await self._modify(ws, [{"type": "Add", "queryId": query_id, "udfPath": udf_path, "args": [dict(args)]}])
        try:
            yield Watch(self, ws, query_id, udf_path)
        finally:
            # A connection that is gone took the subscription with it.
            with anyio.CancelScope(shield=True), contextlib.suppress(SyncUnavailable):
                await self._modify(ws, [{"type": "Remove", "queryId": query_id}])

    async def receive(self, ws: ClientConnection) -> dict[str, Any]:
        """The next frame; a closed socket or a fatal frame raises :class:`SyncUnavailable`."""
        try:
            frame = json.loads(await ws.recv())
        except (WebSocketException, OSError, ValueError) as exc:
            await self._drop(ws)
            raise SyncUnavailable(self.url, f"sync connection lost: {type(exc).__name__}") from exc
        if not isinstance(frame, dict):
            return {}
        if frame.get("type") == "AuthError":
            await self._drop(ws)
            raise StoreFunctionError(self.url, "sync", "the deployment refused the credentials (AuthError)")
        if frame.get("type") == "FatalError":
            await self._drop(ws)
            raise SyncUnavailable(self.url, "the deployment closed the sync session (FatalError)")
        return frame

    async def _connected(self) -> ClientConnection:
        if self._ws is not None:
            return self._ws
        try:
            with anyio.fail_after(self._timeout_s):
                ws = await websockets.connect(
                    self._ws_url, compression=None, ping_interval=None, max_queue=None, user_agent_header="factory"
                )
        except (WebSocketException, OSError, TimeoutError) as exc:
            raise SyncUnavailable(self.url, f"cannot open {self._ws_url}: {type(exc).__name__}") from exc
        reason = "InitialConnect" if self._connections == 0 else "Reconnect"
        hello: list[dict[str, Any]] = [
            {
                "type": "Connect",
                "sessionId": self._session,
                "connectionCount": self._connections,
                "lastCloseReason": reason,
                "clientTs": time.time_ns() // 1_000_000,
            }
        ]
        if self._authorization is not None:
            kind, value = self._authorization.split(" ", 1)
            token_type = "Admin" if kind == "Convex" else "User"
            hello.append({"type": "Authenticate", "tokenType": token_type, "value": value, "baseVersion": 0})
        self._connections += 1
        self._ws, self._query_set = ws, 0
        for frame in hello:
            await self._send(ws, frame)
        return ws

    async def _modify(self, ws: ClientConnection, modifications: list[dict[str, Any]]) -> None:
        base, self._query_set = self._query_set, self._query_set + 1
        frame = {"type": "ModifyQuerySet", "baseVersion": base, "newVersion": base + 1, "modifications": modifications}
        await self._send(ws, frame)

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        try:
            with anyio.fail_after(self._timeout_s):
                await ws.send(json.dumps(frame))
        except (WebSocketException, OSError, TimeoutError) as exc:
            await self._drop(ws)
            raise SyncUnavailable(self.url, f"sync connection lost: {type(exc).__name__}") from exc

    async def _drop(self, ws: ClientConnection) -> None:
        """Forget a connection that failed (the next wait opens a new one) and close it."""
        if self._ws is ws:
            self._ws = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            await ws.close()

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._drop(self._ws)
