"""``factory worker run`` and ``factory worker prepare``: wire settings into a worker and run it.

``prepare`` is a machine's boot for a pinned worker, before its gateway starts (the worker image's
entrypoint runs it): restore the conversation's newest snapshot into the gateway's state
directory and write the agent's workspace; it leaves the agent's gateway config entry (skill
allowlist, host exec) in ``<state dir>/factory-agents.json`` for the image's config writer.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import anyio
import structlog
import typer
from anyio.abc import TaskStatus

from contracts.errors import FactoryError, InvalidInput
from contracts.models import SetWorkerStatusRequest
from contracts.roles import AgentStore, FleetStore, SnapshotStore, WorkerStore
from factory.console import StoreOption, err, out, store_settings
from factory.logging import configure
from factory.settings import BridgeEnvSettings, LogSettings, WorkerSettings, load
from factory.stores import open_store
from gateway.config import AgentSpec
from gateway.snapshots import Limits
from worker.boot import BootReport, boot_machine, bridge_config_path, provision
from worker.config import WorkerConfig
from worker.errors import DeliveryAuthError
from worker.health import HealthServer, Readiness
from worker.job import JobRunner
from worker.loop import StartupRefused, Worker, WorkerExit
from worker.memory import AgentMemory
from worker.metrics import WorkerMetrics
from worker.openclaw.http import HttpDelivery
from worker.openclaw.ready import ReadyProbe
from worker.openclaw.sessions import session_key
from worker.openclaw.ws import WsDelivery
from worker.outage import OutagePolicy
from worker.telegram import TelegramChannel, TelegramMedia

worker_app = typer.Typer(help="Run a worker.", no_args_is_help=True)
log = structlog.get_logger("factory.worker")
EXIT_SECOND_SIGNAL = 130
AGENTS_FILE = "factory-agents.json"
# A one-shot run (`--once`, scripts and cron) does not wait for an outage for ever.
ONCE_MAX_OUTAGE_S = 60.0
EXIT_RECORD_TIMEOUT_S = 5.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def worker_config(settings: WorkerSettings, *, once: bool = False) -> WorkerConfig:
    """The worker's config: the settings of the same names, plus what is derived at the edge."""
    values = settings.model_dump(include=set(WorkerConfig.model_fields), exclude_none=True)
    values.update(worker_id=settings.worker_id or default_worker_id(), machine_ref=settings.machine_ref, once=once)
    return WorkerConfig.model_validate(values)


def make_delivery(settings: WorkerSettings) -> WsDelivery | HttpDelivery:
    token = settings.require_gateway_token()
    url = settings.gateway_url
    if settings.delivery == "http":
        return HttpDelivery(
            url.replace("ws://", "http://", 1).replace("wss://", "https://", 1),
            token,
            timeout_s=settings.delivery_timeout_s,
        )
    return WsDelivery(ws_url(url), token, timeout_s=settings.delivery_timeout_s)


def ws_url(url: str) -> str:
    """The gateway's WebSocket URL: it serves WS and HTTP on one port."""
    return url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


def bridge_call(settings: WorkerSettings, agent_id: str) -> list[str]:
    """The command the baked agent-bridge skill runs (this interpreter, this machine's settings file)."""
    if settings.bridge_dir is None:
        return [sys.executable, "-m", "factory", "bridge", "call"]
    config = bridge_config_path(settings.bridge_dir, agent_id)
    return [sys.executable, "-m", "factory", "bridge", "call", "--config", str(config)]


def agent_memory(
    settings: WorkerSettings, config: WorkerConfig, store: object, metrics: WorkerMetrics | None = None
) -> AgentMemory | None:
    """The worker's memory, when it knows its gateway's state directory and the store keeps snapshots."""
    if settings.openclaw_state_dir is None:
        return None
    if not isinstance(store, SnapshotStore):
        log.warning("this store keeps no snapshots (compat mode): memory follows through history seeding only")
        return None
    secrets_ = [settings.gateway_token.get_secret_value()] if settings.gateway_token else []
    return AgentMemory(
        store=store,
        state_dir=settings.openclaw_state_dir,
        worker_id=config.worker_id,
        workspace_id=config.workspace_id,
        keep=settings.snapshot_keep,
        limits=Limits(max_bytes=settings.snapshot_max_mb * 1024 * 1024),
        secrets=secrets_,
        metrics=metrics,
        timeout_s=settings.snapshot_timeout_s,
    )


async def serve_worker(
    config: WorkerConfig, settings: WorkerSettings, store: WorkerStore
) -> tuple[WorkerExit | None, Worker]:
    """Run one worker with its health server and signal handling; None exit means forced stop."""
    metrics = WorkerMetrics()
    readiness = Readiness()
    result: WorkerExit | None = None
    bridge_env = load(BridgeEnvSettings)
    refused: FactoryError | None = None
    media = TelegramMedia(settings.attachments_path, api_base=settings.telegram_api_base)
    async with (
        make_delivery(settings) as delivery,
        TelegramChannel(api_base=settings.telegram_api_base) as telegram,
        _closing(media),
    ):
        runner = JobRunner(
            delivery=delivery,
            channels={"telegram": telegram},
            session_key=session_key,
            metrics=metrics,
            sessions=delivery if settings.seed_history else None,
            bridge_dir=settings.bridge_dir,
            bridge_env=bridge_env.wire(),
            media=media,
        )
        memory = agent_memory(settings, config, store, metrics)
        policy = OutagePolicy(max_outage_s=settings.max_outage_s or (ONCE_MAX_OUTAGE_S if config.once else None))
        worker = Worker(
            config,
            store,
            runner,
            metrics,
            readiness,
            memory,
            outage_policy=policy,
            gateway_ready=ReadyProbe(settings.gateway_url),
        )
        async with anyio.create_task_group() as tg:
            if settings.health_port is not None:
                server = HealthServer(
                    readiness=readiness, metrics=metrics, host=settings.health_host, port=settings.health_port
                )
                await tg.start(server.serve)
                log.info("health endpoint", url=server.url)
            # Started, not scheduled: the handlers are in place before the first claim.
            await tg.start(_watch_signals, worker, tg.cancel_scope)
            try:
                result = await worker.run()
            except StartupRefused as exc:
                refused = _setting_error(exc)
            except FactoryError as exc:  # one clear line for the CLI, not a task group's traceback
                refused = exc
            tg.cancel_scope.cancel()
    if refused is not None:
        raise refused
    return result, worker


def _setting_error(exc: StartupRefused) -> FactoryError:
    """A start-up refusal: the gateway's names the setting to fix (bad input, exit 2); the store's
    is the store's own answer, which says what to change there (a failure, exit 1)."""
    if exc.component == "store":
        return exc.cause
    setting = "OPENCLAW_GATEWAY_TOKEN" if isinstance(exc.cause, DeliveryAuthError) else "OPENCLAW_GATEWAY_URL"
    return InvalidInput(setting, f"the gateway cannot be used: {exc.cause}")


@contextlib.asynccontextmanager
async def _closing(media: TelegramMedia) -> AsyncIterator[TelegramMedia]:
    try:
        yield media
    finally:
        with anyio.CancelScope(shield=True):
            await media.aclose()


async def _watch_signals(
    worker: Worker, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not worker.stopping:
                log.info("signal received: finishing the job in flight, then exiting", signal=signum.name)
                worker.request_stop()
            else:
                log.warning("second signal: exiting now", signal=signum.name)
                scope.cancel()
                return


async def record_exit(store: object, worker_id: str, result: WorkerExit) -> None:
    """Tell the store this worker is gone, so views stop counting it as active. Best effort: a
    worker that cannot say so (store down, compat mode) ages into "stale" instead."""
    if not isinstance(store, FleetStore):
        return
    request = SetWorkerStatusRequest(worker_id=worker_id, status="stopped", reason=f"exited ({result.reason})")
    try:
        with anyio.CancelScope(shield=True), anyio.move_on_after(EXIT_RECORD_TIMEOUT_S):
            await store.fleet_set_worker_status(request)
    except FactoryError as exc:
        log.warning("could not record the exit", worker_id=worker_id, error=str(exc))


@worker_app.command("run")
def run(
    once: Annotated[bool, typer.Option("--once", help="Process at most one message, then exit.")] = False,
    conversation: Annotated[
        str | None, typer.Option("--conversation", help="Only take messages of this conversation (sticky).")
    ] = None,
    sticky: Annotated[
        bool,
        typer.Option(
            "--sticky",
            help="Unpinned: pin to the conversation of the first job, keeping its memory here (FACTORY_STICKY).",
        ),
    ] = False,
    grace: Annotated[
        float | None, typer.Option("--grace", help="Seconds a job may run on after SIGTERM. Default 30.")
    ] = None,
    idle_exit: Annotated[float | None, typer.Option("--idle-exit", help="Exit after this many idle seconds.")] = None,
    worker_id: Annotated[str | None, typer.Option("--worker-id", help="Default: host-pid-random.")] = None,
    health_port: Annotated[
        int | None, typer.Option("--health-port", help="Serve /healthz, /readyz, /metrics here (0: any port).")
    ] = None,
    max_outage: Annotated[
        float | None,
        typer.Option(
            "--max-outage",
            help="Exit (status 1) after the gateway or the store stayed unavailable this many seconds. "
            f"Default: wait as long as it lasts ({ONCE_MAX_OUTAGE_S:g} s with --once).",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Claim messages, deliver them to the OpenClaw gateway, reply, complete; until stopped."""
    configure(load(LogSettings), default_level="error" if once else "info")
    settings = load(
        WorkerSettings,
        conversation_id=conversation,
        sticky=True if sticky else None,
        grace_s=grace,
        idle_exit_s=idle_exit,
        worker_id=worker_id,
        health_port=health_port,
        max_outage_s=max_outage,
    )
    config = worker_config(settings, once=once)
    settings.require_gateway_token()
    store_cfg = store_settings(store)

    async def main() -> tuple[WorkerExit | None, Worker]:
        opened = open_store(store_cfg, workspace_id=config.workspace_id)
        try:
            result, worker = await serve_worker(config, settings, opened)
            if result is not None:
                await record_exit(opened, config.worker_id, result)
            return result, worker
        finally:
            with anyio.CancelScope(shield=True):
                await opened.aclose()

    result, worker = anyio.run(main)
    if result is None:
        raise typer.Exit(EXIT_SECOND_SIGNAL)
    failure = worker.last_failure
    if once and failure is not None:
        raise FactoryError(failure)
    if not once:
        err.print(f"worker {config.worker_id} exited ({result.reason}) after {result.processed} message(s)")


@worker_app.command("prepare")
def prepare(
    conversation: Annotated[
        str | None,
        typer.Option("--conversation", help="The conversation this machine serves (else FACTORY_CONVERSATION)."),
    ] = None,
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", help="Also write this agent's workspace (a gateway shared by pool workers)."),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="The gateway's state directory (else OPENCLAW_STATE_DIR).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Before the gateway starts: restore the conversation's newest snapshot and write the agents' workspaces.

    Leaves the agents' gateway config entries (skill allowlist, host exec) in <state dir>/factory-agents.json."""
    configure(load(LogSettings), default_level="info")
    settings = load(WorkerSettings, conversation_id=conversation, openclaw_state_dir=state_dir)
    state = settings.openclaw_state_dir
    if state is None:
        raise InvalidInput("OPENCLAW_STATE_DIR", "is not set; pass --state-dir with the gateway's state directory")
    config = worker_config(settings)
    store_cfg = store_settings(store)

    def call(agent_id: str) -> list[str]:
        return bridge_call(settings, agent_id)

    async def main() -> tuple[BootReport | None, list[AgentSpec]]:
        opened = open_store(store_cfg)
        try:
            report, specs = None, []
            memory = agent_memory(settings, config, opened)
            if memory is not None and settings.conversation_id is not None:
                report = await boot_machine(memory, settings.conversation_id, call)
            for key in agent or []:
                if not isinstance(opened, AgentStore):
                    raise InvalidInput("--agent", "this store does not keep agent profiles (compat mode)")
                profile = await opened.get_agent_profile(key)
                if profile is None:
                    raise InvalidInput("--agent", f"no agent profile {key!r} in this store")
                specs.append((await anyio.to_thread.run_sync(provision, state, profile, call))[0])
            return report, specs
        finally:
            with anyio.CancelScope(shield=True):
                await opened.aclose()

    report, specs = anyio.run(main)
    if report is not None and report.agent is not None:
        specs.insert(0, report.agent)
    agents_file = state / AGENTS_FILE
    if not specs:
        agents_file.unlink(missing_ok=True)
        out.print("nothing to prepare: not pinned to a conversation the store knows, and no --agent")
        return
    entries = {spec.id: spec.model_dump(mode="json", exclude_none=True) for spec in specs}
    agents_file.write_text(json.dumps(list(entries.values()), indent=1) + "\n")
    if report is not None and report.agent is not None:
        restore = report.restore.status if report.restore is not None else "none"
        out.print(f"prepared agent {report.agent.id} for {report.conversation_id}: restore {restore}")
    for spec in specs[1 if report is not None and report.agent is not None else 0 :]:
        out.print(f"prepared the workspace of agent {spec.id}")
