"""uvicorn under anyio: serve an app until told to stop, then shut down gracefully.

Shutdown: stop accepting, let requests in flight finish (at most ``grace_s``), end open reply
streams, close the store (the app's lifespan), return. Signals are the caller's (the CLI's) concern.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
import uvicorn
from anyio.abc import TaskStatus
from fastapi import FastAPI


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: whoever runs us (the CLI) owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class IngressServer:
    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 8080, grace_s: float = 10.0) -> None:
        self._server = _Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_config=None,  # our structlog setup stays in charge
                log_level="warning",  # uvicorn's own start/stop lines; ours say the same, structured
                access_log=False,  # one line per request would cost more than the request
                lifespan="on",
                timeout_graceful_shutdown=max(1, round(grace_s)),
                # Telegram and apps keep connections open; a short keep-alive closes connections a
                # client is about to reuse (its request then fails and must be redelivered).
                timeout_keep_alive=75,
                server_header=False,
            )
        )
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self, *, task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until :meth:`stop`; ``task_status`` reports the URL once the socket is listening."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._server.serve)
            while not self._server.started:
                if self._server.should_exit:
                    break
                await anyio.sleep(0.01)
            if self._server.servers and self._server.servers[0].sockets:
                self.port = int(self._server.servers[0].sockets[0].getsockname()[1])
            task_status.started(self.url)

    def stop(self) -> None:
        self._server.should_exit = True
