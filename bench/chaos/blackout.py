"""A loopback TCP forwarder that blacks out on cue: a store or gateway that stops answering, for real.

``cut()`` closes the listening socket (new connections are refused: ``ECONNREFUSED``, exactly what a
dead service gives) and drops every open connection mid-stream; ``restore()`` listens again on the
same port. Whatever talks to ``port`` sees the service behind it vanish and come back; the service
itself runs on untouched. It runs in the caller's task group::

    async with anyio.create_task_group() as tg:
        proxy = await tg.start(Blackout(target_port).serve)
        ...
        await proxy.cut()      # the service is "down"
        await proxy.restore()  # and "up" again
"""

from __future__ import annotations

import contextlib

import anyio
from anyio.abc import SocketAttribute, SocketStream, TaskStatus


class Blackout:
    def __init__(self, target_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.target_port = target_port
        self.host = host
        self.port = port
        self._up = True
        self._changed = anyio.Event()
        self._connections: set[anyio.CancelScope] = set()
        self.cuts = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self, *, task_status: TaskStatus[Blackout] = anyio.TASK_STATUS_IGNORED) -> None:
        """Forward connections until cancelled, listening only while not cut."""
        started = False
        while True:
            while not self._up:
                await self._changed.wait()
            listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
            self.port = int(listener.extra(SocketAttribute.local_port))
            if not started:
                started = True
                task_status.started(self)
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, self._forward)
                while self._up:
                    await self._changed.wait()
                tg.cancel_scope.cancel()

    def _switch(self, up: bool) -> None:
        self._up = up
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, until :meth:`restore`."""
        self.cuts += 1
        self._switch(False)
        for scope in list(self._connections):
            scope.cancel()
        await anyio.sleep(0.05)  # the listener closes in the serving task

    async def restore(self) -> None:
        self._switch(True)
        # Give the listener a moment to bind again before callers count on it.
        for _ in range(200):
            with contextlib.suppress(OSError):
                stream = await anyio.connect_tcp(self.host, self.port)
                await stream.aclose()
                return
            await anyio.sleep(0.01)

    async def _forward(self, client: SocketStream) -> None:
        with anyio.CancelScope() as scope:
            self._connections.add(scope)
            try:
                async with (
                    client,
                    await anyio.connect_tcp(self.host, self.target_port) as upstream,
                    anyio.create_task_group() as tg,
                ):
                    tg.start_soon(_pump, client, upstream, tg.cancel_scope)
                    tg.start_soon(_pump, upstream, client, tg.cancel_scope)
            except OSError:
                pass  # the service behind is down itself: the client sees its connection close
            finally:
                self._connections.discard(scope)


async def _pump(source: SocketStream, sink: SocketStream, both: anyio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
        pass
    finally:
        both.cancel()
