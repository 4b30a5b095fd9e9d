"""``factory runtime --account ID``: one account's runtime (Mission Control's Module 13) on this machine.

It opens the account with its service token (``SERVICE_TOKEN``), uses the gateway that
``OPENCLAW_GATEWAY_URL`` / ``OPENCLAW_GATEWAY_TOKEN`` name, or, without a token, starts its own with
the account's agents (the offline stub model unless ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY``), and
serves ``/health`` and ``/version`` on ``HEALTH_PORT``. SIGTERM or Ctrl-C drains it and records the
runtime offline; a second signal stops it at once.
"""

from __future__ import annotations

import os
import secrets
import signal
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import structlog
import typer
from anyio.abc import TaskStatus
from pydantic import SecretStr

from contracts.errors import InvalidInput
from contracts.models import AgentProfile
from contracts.roles import AccountStore
from contracts.runtime import RuntimeAgent
from factory.cmd_worker import agent_memory, make_delivery
from factory.console import StoreOption, err, store_settings
from factory.logging import configure
from factory.run.model import choose_model
from factory.settings import LogSettings, RunSettings, RuntimeSettings, StoreSettings, WorkerSettings, load
from factory.stores import open_full_store
from gateway.config import AgentSpec, CompatibleModel, ModelChoice
from gateway.install import ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.stub_llm import StubLLMProcess
from runtime.service import Runtime, RuntimeConfig
from worker.boot import boot_machine, provision
from worker.config import WorkerConfig
from worker.health import HealthServer, Readiness
from worker.openclaw.ready import ReadyProbe

log = structlog.get_logger("factory.runtime")
EXIT_SECOND_SIGNAL = 130
GATEWAY_READY_TIMEOUT_S = 300.0


def runtime(
    account: Annotated[str | None, typer.Option("--account", help="The account to run (env: ACCOUNT_ID).")] = None,
    health_port: Annotated[
        int | None, typer.Option("--health-port", help="Serve /health and /version here (env: HEALTH_PORT; 3001).")
    ] = None,
    state_dir: Annotated[
        Path | None,
        typer.Option("--state-dir", help="Where an own gateway keeps its state. Default: .factory/runtime-ACCOUNT"),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Run an account's agents: deliver its notifications, beat its agents' hearts, report health."""
    configure(load(LogSettings), default_level="info")
    settings = load(RuntimeSettings, account_id=account, health_port=health_port)
    if not settings.account_id:
        raise InvalidInput("ACCOUNT_ID", "is not set; pass --account ID or set ACCOUNT_ID")
    token = settings.require_token()
    workers = load(WorkerSettings)
    store_cfg = store_settings(store or settings.store)
    config = RuntimeConfig(
        account_id=settings.account_id,
        delivery_interval_s=settings.delivery_interval / 1000,
        health_check_interval_s=settings.health_check_interval / 1000,
        droplet_id=settings.droplet_id,
        droplet_ip=settings.droplet_ip,
        grace_s=workers.grace_s,
        gateway_wait_s=workers.gateway_wait_s,
    )
    home = state_dir or Path(".factory") / f"runtime-{settings.account_id}"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # the stub model's log holds conversation text
    stopped = anyio.run(_main, config, settings, workers, store_cfg, token, home)
    if not stopped:
        raise typer.Exit(EXIT_SECOND_SIGNAL)
    err.print(f"runtime of account {config.account_id} stopped (offline)")


async def _main(
    config: RuntimeConfig,
    settings: RuntimeSettings,
    workers: WorkerSettings,
    store_cfg: StoreSettings,
    token: SecretStr,
    home: Path,
) -> bool:
    """True once the runtime drained and went offline; False when a signal cut it short (a second
    one, or one during the start: the gateway started so far is stopped on the way out)."""
    stop = _Stop()
    async with anyio.create_task_group() as tg:
        # Before anything starts: a signal while the gateway boots must still stop it cleanly.
        await tg.start(_watch_signals, stop, tg.cancel_scope)
        async with AsyncExitStack() as stack:
            opened = open_full_store(store_cfg, role="runtime")
            stack.push_async_callback(opened.aclose)
            if not isinstance(opened, AccountStore):
                raise InvalidInput("store", f"{opened.name} does not keep Mission Control accounts yet; use SQLite")
            account = await opened.open_account(config.account_id, token)
            if workers.gateway_token is None:
                state = (home / "gateway").absolute()
                gateway = await _own_gateway(stack, home, state, await account.agents(), opened, workers)
                workers = workers.model_copy(
                    update={"gateway_url": gateway.url, "gateway_token": gateway.token, "openclaw_state_dir": state}
                )
            delivery = make_delivery(workers)
            await stack.enter_async_context(delivery)
            service = Runtime(
                config,
                account,
                opened,
                delivery,
                ReadyProbe(workers.gateway_url),
                sessions=delivery if workers.seed_history else None,
                worker_store=lambda: open_full_store(store_cfg, role="worker"),
                memory=lambda worker, store: agent_memory(workers, worker, store),
            )
            server = HealthServer(
                readiness=Readiness(),
                host=settings.health_host,
                port=settings.health_port,
                routes={"/health": service.health, "/version": service.version_info},
            )
            async with anyio.create_task_group() as serving:
                await serving.start(server.serve)
                log.info("runtime health endpoint", url=f"{server.url}/health")
                stop.service = service
                await service.run()
                stop.finished = True
                serving.cancel_scope.cancel()
        tg.cancel_scope.cancel()
    return stop.finished


@dataclass
class _Stop:
    service: Runtime | None = None
    requested: bool = False
    finished: bool = False


async def _own_gateway(
    stack: AsyncExitStack, home: Path, state: Path, agents: list[RuntimeAgent], store: object, workers: WorkerSettings
) -> GatewayRuntime:
    """A gateway of this runtime's own with the account's agents, stopped when the runtime ends.

    Before it starts, each agent's state comes back from its session conversation's newest
    snapshot (the one its worker took when a runtime last drained, on any machine), then its
    workspace files are written over it: the account's agents remember across machines."""
    specs: dict[str, AgentSpec] = {}
    for agent in agents or [RuntimeAgent(agent_id="-", account_id="-", name="main", slug="main")]:
        spec = await _restored(state, agent, store, workers) if agents else None
        if spec is None:  # a conversation the store does not know yet: nothing to restore
            profile = AgentProfile(
                agent_key=agent.agent_key,
                openclaw_agent_id=agent.openclaw_agent_id,
                workspace_files=agent.workspace_files,
            )
            spec = (await anyio.to_thread.run_sync(provision, state, profile, lambda _id: []))[0]
        specs[spec.id] = spec
    install = await anyio.to_thread.run_sync(ensure_openclaw, dict(os.environ))
    plan = choose_model(load(RunSettings))
    model: ModelChoice
    if plan.hosted is None:
        stub = await StubLLMProcess.astart((home / "stub-llm.jsonl").absolute(), output=home / "stub-llm.out")
        stack.callback(stub.stop)
        model = CompatibleModel(base_url=stub.base_url)
    else:
        model = plan.hosted
    gateway = GatewayRuntime(
        install, state, model=model, agents=list(specs.values()), ready_timeout_s=GATEWAY_READY_TIMEOUT_S
    )
    stack.push_async_callback(gateway.astop)
    log.info("starting the account's OpenClaw gateway", agents=sorted(specs), model=plan.label)
    await gateway.astart()
    return gateway


async def _restored(state: Path, agent: RuntimeAgent, store: object, workers: WorkerSettings) -> AgentSpec | None:
    """Restore the agent's newest snapshot of its session conversation, then write its workspace.
    Through the workers' own memory settings, so the same size limit and timeout hold here."""
    booting = WorkerConfig(worker_id=f"rt-boot-{secrets.token_hex(3)}")
    memory = agent_memory(workers.model_copy(update={"openclaw_state_dir": state}), booting, store)
    if memory is None:
        return None
    return (await boot_machine(memory, agent.session_key, lambda _id: [])).agent


async def _watch_signals(
    stop: _Stop, scope: anyio.CancelScope, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async for signum in signals:
            if not stop.requested and stop.service is not None:
                log.info("signal received: draining, then offline", signal=signum.name)
                stop.requested = True
                stop.service.request_stop()
            else:
                log.warning("signal received while starting, or a second one: exiting now", signal=signum.name)
                scope.cancel()
                return
