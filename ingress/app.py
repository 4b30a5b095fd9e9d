"""The ASGI application of ``factory serve``: health, the Telegram webhook, the app API, the console.

``create_app(open_store, config)`` builds it; the store is opened in the app's lifespan (on the
server's event loop) and closed when the server stops. Errors our code can name become one JSON
line: bad input 422 naming the field, an unavailable store 503 with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import anyio
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from contracts.errors import AgentUnavailable, ConversationConflict, InvalidInput, StoreError
from contracts.roles import EnqueueStore, IngressStore, SecretStore
from ingress import app_api, webhook
from ingress.batcher import UpdateBatcher
from ingress.config import IngressConfig
from ingress.console import ConsoleConfig, ConsoleStores, PlanSource, mount_console

log = structlog.get_logger("ingress")


class FrontDoorStore(IngressStore, SecretStore, EnqueueStore, Protocol):
    """What the front door uses of the store: the ingress and secrets roles, and enqueue."""


class ServedStore(FrontDoorStore, ConsoleStores, Protocol):
    """What ``factory serve`` uses: the front door's roles and the console's."""


class _Lazy:
    """The store, reachable by the routes before the lifespan has opened it."""

    def __init__(self) -> None:
        self.store: ServedStore | None = None

    def __getattr__(self, name: str) -> object:
        if self.store is None:
            raise RuntimeError("the store is not open yet (the app's lifespan has not started)")
        return getattr(self.store, name)


def create_app(
    open_store: Callable[[], ServedStore],
    config: IngressConfig | None = None,
    console: ConsoleConfig | None = None,
    plans: PlanSource | None = None,
) -> FastAPI:
    """The app; ``plans`` gives the console's workers page a reconcile dry run on demand."""
    config = config or IngressConfig()
    holder = _Lazy()

    batcher = UpdateBatcher(holder)  # type: ignore[arg-type]  # reason: _Lazy forwards to the store

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder.store = open_store()
        log.info("ingress.store_open", store=holder.store.name)
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(batcher.run)
                yield
                tg.cancel_scope.cancel()
        finally:
            await holder.store.aclose()

    app = FastAPI(
        title="factory",
        summary="The front door of a factory fleet: the Telegram webhook, the app API and the operator console.",
        version="1",
        lifespan=lifespan,
    )
    # The routes see the store through the holder; mypy sees the protocol.
    store: ServedStore = holder  # type: ignore[assignment]  # reason: _Lazy forwards every attribute

    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSONResponse:
        """200 while the store answers; 503 otherwise."""
        try:
            now = await store.now_ms()
        except StoreError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=503)
        return JSONResponse({"ok": True, "now": now})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
        return JSONResponse({"error": f"{where}: {first['msg']}"}, status_code=422)

    @app.exception_handler(InvalidInput)
    async def _bad_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(AgentUnavailable)
    @app.exception_handler(ConversationConflict)
    async def _conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=409)

    @app.exception_handler(StoreError)
    async def _store_down(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"error": "store unavailable; retry later"}, status_code=503, headers={"Retry-After": "5"})

    app.include_router(webhook.build_router(store, config, batcher))
    app.include_router(app_api.build_router(store, config))
    mount_console(app, store, console or ConsoleConfig(), plans)
    return app
