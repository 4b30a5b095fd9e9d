"""``factory serve`` (the front door) and ``factory telegram configure``.

The web stack (FastAPI, Starlette, uvicorn: ~0.4 s of imports) is imported by the commands that
use it, so that every other ``factory`` command starts without it.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Annotated

import anyio
import structlog
import typer

from contracts.errors import InvalidInput
from contracts.secrets import SecretBox, reseal_all
from factory.console import JsonOption, StoreOption, out, print_json, store_settings, with_store
from factory.fleet import DryRunPlans
from factory.logging import configure
from factory.settings import ConsoleSettings, LogSettings, ScaleSettings, ServeSettings, StoreSettings, load
from factory.stores import open_full_store, secrets_box

if TYPE_CHECKING:
    from ingress import IngressConfig, IngressServer, ServedStore
    from ingress.console import ConsoleConfig

telegram_app = typer.Typer(help="Connect agents' Telegram bots to `factory serve`.", no_args_is_help=True)
log = structlog.get_logger("factory.serve")


def console_config(settings: ConsoleSettings) -> ConsoleConfig:
    """The console's config from FACTORY_CONSOLE_*; header mode without its header is one line."""
    from ingress.console import ConsoleConfig

    header = (settings.trusted_header or "").strip() or None
    if settings.auth == "header" and header is None:
        raise InvalidInput(
            "FACTORY_CONSOLE_TRUSTED_HEADER",
            "is required with FACTORY_CONSOLE_AUTH=header: the header your proxy names the signed-in user in "
            "(e.g. X-Forwarded-User)",
        )
    return ConsoleConfig(
        auth=settings.auth,
        trusted_header=header,
        admins=frozenset(a.strip() for a in settings.admins.split(",") if a.strip()),
        session_ttl_ms=settings.session_ttl_s * 1000,
        refresh_s=settings.refresh_s,
    )


def ingress_config(settings: ServeSettings) -> IngressConfig:
    from ingress import IngressConfig

    return IngressConfig.model_validate(settings.model_dump(include=set(IngressConfig.model_fields)))


def opener(settings: StoreSettings) -> ServedStore:
    return open_full_store(settings, role="ingress")


async def serve_until_signalled(server: IngressServer, settings: StoreSettings, push_every_s: float) -> None:
    async with anyio.create_task_group() as tg:
        url = await tg.start(server.serve)
        log.info("serving", url=url, store=settings.store)
        stopping = anyio.Event()
        if push_every_s > 0:
            # The push dispatcher rides along: every slot is enqueued once however many
            # `factory serve` processes and cron'd `factory dispatch` runs race it.
            tg.start_soon(_dispatch_pushes, settings, push_every_s, stopping)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal received: finishing requests in flight, then exiting", signal=signum.name)
                stopping.set()
                server.stop()
                break
    log.info("stopped", url=url)


async def _dispatch_pushes(settings: StoreSettings, every_s: float, stopping: anyio.Event) -> None:
    from schedules.dispatcher import dispatch_forever

    store = open_full_store(settings, role="schedule")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: dispatch_forever(store, interval_s=every_s))
            await stopping.wait()
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on. Env: FACTORY_SERVE_HOST.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (0: any free one). Env: FACTORY_SERVE_PORT.")] = None,
    store: StoreOption = None,
) -> None:
    """Serve the Telegram webhook, the app API, the operator console (/console) and /healthz until
    SIGTERM (then finish what is in flight)."""
    from ingress import IngressServer, create_app

    configure(load(LogSettings), default_level="info")
    settings = load(ServeSettings, host=host, port=port)
    console = console_config(load(ConsoleSettings))
    store_cfg = store_settings(store)
    # Refuse at start what can never work (a bad store URL, a malformed key), and seal values
    # stored before encryption existed, before the first request.
    box = secrets_box(store_cfg)
    with_store(store, lambda opened: _seal_on_open(opened, box), role="ingress")
    plans = DryRunPlans(store_cfg, load(ScaleSettings))
    app = create_app(lambda: opener(store_cfg), ingress_config(settings), console, plans)
    server = IngressServer(app, host=settings.host, port=settings.port, grace_s=settings.grace_s)
    anyio.run(serve_until_signalled, server, store_cfg, settings.push_dispatch_s)


async def _seal_on_open(opened: ServedStore, box: SecretBox | None) -> None:
    await opened.now_ms()
    if box is not None and any(s.key_id is None for s in await opened.secret_status()):
        await reseal_all(opened, box)


@telegram_app.command("configure")
def telegram_configure(
    agent: Annotated[str, typer.Option("--agent", help="The agent whose bot to connect.")],
    public_url: Annotated[str, typer.Option("--public-url", help="Where `factory serve` is reachable (https).")],
    drop_pending: Annotated[
        bool, typer.Option("--drop-pending", help="Drop updates Telegram is still holding for the bot.")
    ] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Generate the agent's webhook secret, call setWebhook and getWebhookInfo, report readiness."""
    from ingress.configure import configure_webhook

    api_base = load(ServeSettings).telegram_api_base
    report = with_store(
        store,
        lambda s: configure_webhook(s, agent, public_url, api_base=api_base, drop_pending_updates=drop_pending),
        role="ingress",
    )
    if as_json:
        print_json(report)
        return
    state = "ready" if report.is_ready else "NOT ready"
    bot = report.bot_username or report.bot_id
    out.print(f"agent {agent}: bot {bot} → {report.webhook_url} ({state})", markup=False)
    if not report.is_ready:
        out.print(f"Telegram reports the webhook as {report.current_url or 'unset'}", markup=False)
    if report.last_error_message:
        out.print(f"last delivery error: {report.last_error_message}", markup=False)
    out.print(f"pending updates: {report.pending_update_count}", markup=False)
