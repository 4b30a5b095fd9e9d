"""The fleet phase: scaling settings, the burst, the autoscaler and the observer until the run settles, teardown."""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from autoscaler.errors import ProviderError
from autoscaler.providers.local import LocalProvider
from autoscaler.reconciler import Reconciler
from contracts.errors import FactoryError
from contracts.models import ReconcileRecord
from factory.run.burst import BurstMessage, enqueue_burst
from factory.run.demo import OBSERVE_S, SCALE_DOWN_WINDOW_S, TICK_S
from factory.run.screen import Screen, excerpt, show_live, show_plain
from factory.run.state import Outcome, RunState, Tracked
from factory.settings import ScaleSettings
from factory.stores import FullStore
from gateway.runtime import GatewayRuntime

BOOT_FAILURES_TO_GIVE_UP = 3


class DemoPlans:
    """The console's dry run during the demo: the demo's own reconciler, once it exists."""

    def __init__(self) -> None:
        self.reconciler: Reconciler | None = None

    async def dry_run(self) -> ReconcileRecord:
        if self.reconciler is None:
            raise FactoryError("the demo's autoscaler is not running yet; try again in a moment")
        result = await self.reconciler.tick(dry_run=True)
        return result.record(self.reconciler.provider.name, await self.reconciler.store.now_ms())


async def autoscale(reconciler: Reconciler, state: RunState) -> None:
    """The autoscaler in watch mode: one tick every TICK_S; a failed tick is shown and retried."""
    while True:
        try:
            result = await reconciler.tick()
        except FactoryError as exc:
            state.record_tick_error(str(exc))
        else:
            state.record_tick(result)
        await anyio.sleep(TICK_S)


async def _refresh_message(store: FullStore, state: RunState, tracked: Tracked) -> None:
    record = await store.get_message(tracked.message_id)
    if record is None:
        return
    tracked.status, tracked.finished_at = record.status, record.finished_at
    tracked.worker_id = record.claimed_by or tracked.worker_id
    tracked.error = record.last_error
    if not tracked.terminal:
        return
    if tracked.status == "done":
        tracked.reply = await _reply_to(store, tracked)
    tracked.finished_seen_s = state.elapsed()
    state.finished.append(tracked)


async def _reply_to(store: FullStore, tracked: Tracked) -> str | None:
    conversation = await store.get_conversation(tracked.conversation_id)
    history = conversation.history if conversation is not None else []
    for i in range(len(history) - 1, -1, -1):
        if history[i].role == "user" and history[i].content == tracked.text:
            after = history[i + 1 : i + 2]
            return after[0].content if after and after[0].role == "assistant" else None
    return None


async def observe(store: FullStore, provider: LocalProvider, state: RunState, settled: anyio.Event) -> None:
    """Read the store and the provider for the view; set ``settled`` once the run is over."""
    while True:
        for tracked in [m for m in state.messages.values() if not m.terminal]:
            await _refresh_message(store, state, tracked)
        state.workers = await store.list_workers()
        state.machines = await provider.list()
        state.open_launches = len([r for r in await store.ledger_list() if r.provider == provider.name])
        failed = state.boot_failures()
        if len(failed) >= BOOT_FAILURES_TO_GIVE_UP and not state.count("done"):
            log = provider.state_dir / f"{failed[-1]}.log"
            said = _last_line(log)
            state.failure = f"{len(failed)} workers exited before registering{said}; see {log}"
        if state.settled or state.failure:
            settled.set()
            return
        await anyio.sleep(OBSERVE_S)


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f" (the last one said: {excerpt(lines[-1], 200)})" if lines else ""


async def run_fleet(
    screen: Screen,
    state: RunState,
    store: FullStore,
    provider: LocalProvider,
    reconciler: Reconciler,
    burst: Sequence[BurstMessage],
) -> None:
    settled = anyio.Event()
    async with anyio.create_task_group() as tg:
        # The burst starts first, so the autoscaler's first tick already sees demand.
        tg.start_soon(enqueue_burst, store, state, burst, secrets.token_hex(3))
        tg.start_soon(show_live if screen.live else show_plain, screen, state)
        tg.start_soon(autoscale, reconciler, state)
        tg.start_soon(observe, store, provider, state, settled)
        await settled.wait()
        tg.cancel_scope.cancel()


def fleet_settings(runtime: GatewayRuntime, max_workers: int) -> ScaleSettings:
    """The demo's scaling policy and worker wiring, every value explicit (FACTORY_SCALE_* is ignored)."""
    return ScaleSettings(
        provider="local",
        mode="affinity",
        conversations_per_worker=1,
        min_workers=0,
        max_workers=max_workers,
        max_step=max_workers,
        scale_down_window_s=SCALE_DOWN_WINDOW_S,
        idle_timeout_s=None,
        budget_machines=max_workers,
        launch_timeout_s=120.0,
        launch_hedge_s=60.0,
        drain_deadline_s=60.0,
        pool_size=0,
        pool_prefill=False,
        keep_warm_workers=0,
        worker_store=None,
        gateway_url=runtime.url,
        gateway_token=runtime.token,
        # Pinned workers snapshot their agent from the gateway's state when they stop.
        gateway_state_dir=runtime.state_dir,
    )


async def close_fleet(provider: LocalProvider, state: RunState, outcome: Outcome) -> None:
    with anyio.CancelScope(shield=True):
        try:
            outcome.workers_stopped = await provider.destroy_all()
        except ProviderError as exc:
            outcome.cleanup_problem = str(exc)
        finally:
            state.closed_at = time.monotonic()
            await provider.aclose()
