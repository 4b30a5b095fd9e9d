"""The ``factory run`` command: options in, the run under signal handling, cleanup and summary out."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import anyio
import typer
from pydantic import SecretStr

from autoscaler.providers.local import LocalConfig, LocalProvider
from autoscaler.providers.local.config import process_env
from autoscaler.reconciler import Reconciler
from contracts.errors import FactoryError, InvalidInput, first_factory_error
from contracts.secrets import new_key
from factory.console import err, out, print_json, store_settings
from factory.fleet import launch_specs, scaling_policy
from factory.logging import configure
from factory.run.burst import demo_burst
from factory.run.demo import (
    DEMO_DIR,
    DEMO_STORE,
    SCALE_DOWN_WINDOW_S,
    TICK_S,
    WORKER_STOP_TIMEOUT_S,
    exclusive,
    reset_demo,
)
from factory.run.fleet import DemoPlans, close_fleet, fleet_settings, run_fleet
from factory.run.gateway import install_openclaw, start_gateway
from factory.run.memory import check_memory
from factory.run.model import ModelPlan, choose_model
from factory.run.screen import Screen
from factory.run.state import Outcome, RunState
from factory.run.summary import print_summary, summary_of
from factory.settings import LogSettings, RunSettings, StoreSettings, load
from factory.stores import open_full_store

# Demo workers do not wait for ever on a gateway that is gone: if this command is killed outright
# (its gateway and stub die with it), the workers it started exit on their own within a minute.
DEMO_MAX_OUTAGE_S = 60.0
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


async def _shielded(call: Callable[[], Awaitable[object]]) -> None:
    with anyio.CancelScope(shield=True):
        await call()


@dataclass(frozen=True)
class RunOptions:
    conversations: int
    messages: int
    max_workers: int
    store: StoreSettings
    reset_store: bool
    demo: Path
    timeout_s: float


async def demo_run(screen: Screen, opts: RunOptions, plan: ModelPlan, env: Mapping[str, str], outcome: Outcome) -> None:
    # The front door's web stack is imported here, when a demo runs, not by every `factory` command.
    from factory.run.telegram import say_hello, show_replies, start_front_door

    with anyio.move_on_after(opts.timeout_s) as overall, exclusive(opts.demo):
        async with AsyncExitStack() as stack:
            outcome.phase = "resetting the demo folder"
            leftovers = await reset_demo(opts.demo, reset_store=opts.reset_store)
            if leftovers:
                screen.line(f"stopped {leftovers} worker(s) an earlier run left behind")
            # The store first: a store that cannot work fails the run in a second, not after the gateway.
            outcome.phase = "opening the store"
            store = open_full_store(opts.store, role="demo")
            stack.push_async_callback(_shielded, store.aclose)
            await store.now_ms()  # a Convex store answers (reachable, and the token is accepted)
            outcome.phase = "installing OpenClaw"
            install = await install_openclaw(screen, env, outcome, opts.timeout_s - (time.monotonic() - outcome.t0))
            outcome.phase = "starting the gateway"
            runtime = await start_gateway(screen, stack, install, opts.demo, plan, outcome)
            outcome.phase = "opening the front door"
            plans = DemoPlans()
            telegram, bot_api = await start_front_door(
                stack, screen, store, lambda: open_full_store(opts.store, role="ingress"), plans
            )
            scale = fleet_settings(runtime, opts.max_workers)
            # Workers need the gateway, not the model: provider keys stay with the gateway, and
            # workers get only the process basics and what contracts.launch lists.
            config = LocalConfig(
                state_dir=opts.demo / "local", stop_timeout_s=WORKER_STOP_TIMEOUT_S, base_env=process_env(env)
            )
            provider = LocalProvider(config)
            state = RunState(outcome.t0, opts.messages, plan.label, opts.max_workers)
            outcome.state = state
            stack.push_async_callback(close_fleet, provider, state, outcome)
            specs = launch_specs(
                scale, opts.store, "local", grace_s=10, max_outage_s=DEMO_MAX_OUTAGE_S, telegram_api_base=bot_api
            )
            reconciler = Reconciler(store, provider, scaling_policy(scale), specs)
            plans.reconciler = reconciler
            screen.line(
                f"autoscaler: local provider, affinity (one worker per active conversation, max {opts.max_workers}), "
                f"scale-down after {SCALE_DOWN_WINDOW_S:g} s idle, tick every {TICK_S:g} s; "
                f"worker logs in {config.state_dir}/"
            )
            outcome.setup_s = time.monotonic() - outcome.t0
            outcome.phase = "running the fleet"
            await say_hello(telegram, store, state)
            await run_fleet(screen, state, store, provider, reconciler, demo_burst(opts.conversations, opts.messages))
            show_replies(screen, telegram)
            outcome.failure = state.failure
            if outcome.failure is None:
                outcome.phase = "checking that memory follows a conversation to a fresh machine"
                outcome.memory = await check_memory(
                    screen,
                    stack,
                    install,
                    runtime,
                    store,
                    opts.store,
                    provider,
                    state,
                    outcome,
                    plan,
                    opts.demo,
                    opts.max_workers,
                )
                outcome.failure = state.failure or (None if outcome.memory.ok else "the agent forgot earlier turns")
            outcome.phase = "cleaning up"
    if overall.cancelled_caught:
        outcome.failure = f"timed out after {opts.timeout_s:g} s while {outcome.phase}"


async def watch_signals(scope: anyio.CancelScope, screen: Screen, outcome: Outcome) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if outcome.interrupted_by is None:
                outcome.interrupted_by = signum
                screen.line(f"{signum.name}: stopping everything this run started…", style="yellow")
                scope.cancel()
            else:
                screen.line("still cleaning up; this takes a few seconds", style="yellow")


async def main(screen: Screen, opts: RunOptions, plan: ModelPlan, env: Mapping[str, str], outcome: Outcome) -> None:
    async with anyio.create_task_group() as tg:
        work = anyio.CancelScope()
        tg.start_soon(watch_signals, work, screen, outcome)
        try:
            with work:
                await demo_run(screen, opts, plan, env, outcome)
        finally:
            outcome.wall_s = time.monotonic() - outcome.t0
            tg.cancel_scope.cancel()


def run(
    conversations: Annotated[
        int, typer.Option("--conversations", min=1, max=100, help="Demo conversations (one user each).")
    ] = 6,
    messages: Annotated[
        int, typer.Option("--messages", min=1, max=2000, help="Messages, spread over the conversations.")
    ] = 20,
    provider: Annotated[str, typer.Option("--provider", help="Where workers run; only local fits one machine.")] = (
        "local"
    ),
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help=f"SQLite path or Convex URL. Default: a fresh demo store, {DEMO_STORE}, emptied at every start.",
            show_default=False,
        ),
    ] = None,
    max_workers: Annotated[int, typer.Option("--max-workers", min=1, max=32, help="Most workers at once.")] = 6,
    json_summary: Annotated[
        bool, typer.Option("--json-summary", help="Progress on stderr; one JSON summary on stdout.")
    ] = False,
) -> None:
    """Run the whole fleet here: store, OpenClaw gateway, autoscaler and a burst of demo messages.

    The gateway's model comes from OPENAI_API_KEY, else ANTHROPIC_API_KEY (FACTORY_RUN_MODEL picks the
    model), else a built-in offline stub. It ends once every message is done or dead-lettered and the
    fleet is back to zero, or after FACTORY_RUN_TIMEOUT_S (default 480); it always stops what it started.
    """
    configure(load(LogSettings), default_level="warning")
    if provider != "local":
        raise InvalidInput(
            "--provider",
            f"{provider!r} cannot run here: `factory run` keeps the whole fleet on this machine, so only 'local' "
            "works; for fly or digitalocean use `factory reconcile --provider …` with a Convex store",
        )
    if messages < conversations:
        raise InvalidInput("--messages", f"must be at least --conversations ({conversations}): one per conversation")
    settings = load(RunSettings)
    plan = choose_model(settings)
    demo_store = store_settings(store if store is not None else str(DEMO_STORE))
    if demo_store.secrets_key is None:
        # The demo seals its bot token like any store; workers get the key with their launch.
        demo_store = demo_store.model_copy(update={"secrets_key": SecretStr(new_key())})
    opts = RunOptions(
        conversations=conversations,
        messages=messages,
        max_workers=max_workers,
        store=demo_store,
        reset_store=store is None,
        demo=DEMO_DIR,
        timeout_s=settings.timeout_s,
    )
    screen = Screen(err if json_summary else out)
    screen.line(
        f"factory run: {messages} messages over {conversations} conversations · local provider, up to "
        f"{max_workers} workers · demo folder {DEMO_DIR}/"
    )
    screen.line(f"model: {plan.label}" + (" — replies echo the message" if plan.hosted is None else ""))
    outcome = Outcome(t0=time.monotonic())
    try:
        anyio.run(main, screen, opts, plan, dict(os.environ), outcome)
    except BaseExceptionGroup as group:
        found = first_factory_error(group)
        if found is None:
            raise
        outcome.failure = str(found)
    finish(screen, outcome, opts, plan, json_summary)


def finish(screen: Screen, outcome: Outcome, opts: RunOptions, plan: ModelPlan, json_summary: bool) -> None:
    parts = []
    if outcome.workers_stopped is not None:
        n = outcome.workers_stopped
        parts.append(f"stopped {n} worker process(es)" if n else "no worker process was left running")
    if outcome.stopped:
        parts.append(f"stopped the {' and the '.join(outcome.stopped)}")
    if outcome.cleanup_problem:
        parts.append(f"PROBLEM: {outcome.cleanup_problem}")
    if parts:
        screen.line("cleanup: " + "; ".join(parts))
    summary = summary_of(outcome, plan)
    if outcome.state is not None:
        print_summary(screen, summary)
    failure = outcome.failure or outcome.cleanup_problem
    if failure is None and summary["deadLettered"]:
        where = f"factory queue dead-letters --store {opts.store.store}"
        failure = f"{summary['deadLettered']} message(s) dead-lettered; see `{where}`"
    if json_summary:
        print_json({"ok": failure is None and outcome.interrupted_by is None, **summary, "error": failure})
    if outcome.interrupted_by is not None:
        raise typer.Exit(EXIT_SIGINT if outcome.interrupted_by == signal.SIGINT else EXIT_SIGTERM)
    if failure is not None:
        raise FactoryError(failure)
