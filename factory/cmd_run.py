"""``factory run``: the whole fleet on this machine, end to end, with a live view.

A fresh SQLite store, a real OpenClaw gateway (a hosted model when ``OPENAI_API_KEY`` or
``ANTHROPIC_API_KEY`` is set, else the built-in offline stub) and the autoscaler with the local
provider ticking in the background. A burst of demo messages goes into the queue; the screen shows
the queue, the fleet scaling up and draining, and the replies with their enqueue→reply latency.
The command ends when every message is done or dead-lettered and the fleet is back to zero, with
a summary.

Whatever ends it (success, an error, Ctrl-C, SIGTERM, the overall timeout), every worker, the
gateway and the stub are stopped, in that order, under shielded cleanup, before it returns.
Everything it writes stays in the demo folder ``.factory/run/`` (store, worker and gateway logs);
OpenClaw itself is installed once per machine under ``~/.cache/factory``.
"""

from __future__ import annotations

import fcntl
import math
import os
import secrets
import shutil
import signal
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx
import typer
from pydantic import SecretStr
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from autoscaler.errors import ProviderError
from autoscaler.plan import Action, CollectOrphan, Destroy, Launch
from autoscaler.provider import Machine
from autoscaler.providers.local import LocalConfig, LocalProvider
from autoscaler.reconciler import Reconciler, TickResult
from contracts.errors import FactoryError, InvalidInput
from contracts.models import EnqueueRequest, MessagePayload, MessageStatus, WorkerRecord
from contracts.store import Store
from factory.console import err, out, print_json, store_settings
from factory.fleet import launch_specs, scaling_policy
from factory.logging import configure
from factory.settings import LogSettings, RunSettings, ScaleSettings, StoreSettings, load
from factory.stores import open_store
from worker.openclaw.config import CompatibleModel, HostedModel, ModelChoice
from worker.openclaw.errors import GatewayError
from worker.openclaw.gateway import GatewayRuntime
from worker.openclaw.install import OPENCLAW_VERSION, OpenClawInstall, default_cache_dir, ensure_openclaw
from worker.openclaw.stub_llm import StubLLMProcess

DEMO_DIR = Path(".factory/run")
DEMO_STORE = DEMO_DIR / "factory.db"
OPENAI_DEFAULT_MODEL = "gpt-5.4-mini"
ANTHROPIC_DEFAULT_MODEL = "claude-haiku-4-5"
AGENT = "main"

TICK_S = 2.0  # the autoscaler's reconcile interval
OBSERVE_S = 0.5  # how often the store and the provider are read for the view
REFRESH_S = 0.25  # the live view's refresh (4 per second)
PLAIN_STATUS_S = 5.0  # a status line this often when stdout is not a terminal
SCALE_DOWN_WINDOW_S = 6.0  # a demo-sized stabilisation window (production default: 300 s)
BURST_WINDOW_S = 6.0  # the burst is spread over at most this long
BURST_INTERVAL_S = 0.25
WARM_UP_TIMEOUT_S = 120.0
WORKER_STOP_TIMEOUT_S = 15.0  # destroy: SIGTERM, then SIGKILL after this long
BOOT_FAILURES_TO_GIVE_UP = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

_NAMES = ("alice", "bao", "carmen", "dmitri", "emeka", "fatima", "giulia", "hiro", "ines", "jonas", "kofi", "lena")
_TEXTS = (
    "Hi! Can you summarise what we agreed in yesterday's planning call?",
    "What's a good name for a team offsite in March?",
    "Remind me how to rotate the API key for the staging bot.",
    "Draft a two-line reply thanking the vendor for the quick fix.",
    "Which is cheaper per month: three small VMs or one large one?",
    "Translate 'see you at the standup' into Spanish, please.",
    "Give me three bullet points for the v2.4 release notes.",
    "Can you check my math: what is 18% of 2,450?",
    "What should I pack for a rainy weekend in Edinburgh?",
    "Write a haiku about a queue that never loses a message.",
    "Roughly how long should a good code review take?",
    "Suggest a polite way to decline a meeting invite.",
    "Explain in one paragraph what an idempotency key is.",
    "What's the difference between a lease and a lock?",
    "Any tips for keeping a standup under ten minutes?",
    "Turn this into a checklist: back up, migrate, verify, announce.",
    "Can you recommend a beginner's book on distributed systems?",
    "Summarise the pros and cons of autoscaling to zero.",
    "Write a friendly reminder that the invoices are due on Friday.",
    "Thanks, that's all for now!",
)


# -- choices made at the edge ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPlan:
    """The gateway's model: a hosted one from a provider key, or None for the offline stub."""

    hosted: HostedModel | None
    label: str


def choose_model(settings: RunSettings) -> ModelPlan:
    """OPENAI_API_KEY, else ANTHROPIC_API_KEY, else the offline stub; the label never holds a key."""
    keys: list[tuple[str, SecretStr | None, str]] = [
        ("openai", settings.openai_api_key, OPENAI_DEFAULT_MODEL),
        ("anthropic", settings.anthropic_api_key, ANTHROPIC_DEFAULT_MODEL),
    ]
    for provider, key, default in keys:
        if key is None:
            continue
        name = _model_name(settings.model, provider, default)
        hosted = HostedModel.model_validate({"provider": provider, "model": name, "api_key": key})
        return ModelPlan(hosted, f"{provider}/{name} (from {hosted.key_env})")
    ignored = "; FACTORY_RUN_MODEL ignored" if settings.model else ""
    return ModelPlan(None, f"offline stub (no OPENAI_API_KEY / ANTHROPIC_API_KEY set{ignored})")


def _model_name(wanted: str | None, provider: str, default: str) -> str:
    if not wanted:
        return default
    prefix, slash, rest = wanted.partition("/")
    if not slash:
        return wanted
    if prefix != provider or not rest:
        raise InvalidInput("FACTORY_RUN_MODEL", f"{wanted!r} is not a {provider} model; the key in use is {provider}'s")
    return rest


@dataclass(frozen=True)
class BurstMessage:
    conversation_id: str
    user: str
    text: str


def demo_burst(conversations: int, messages: int) -> list[BurstMessage]:
    """``messages`` user messages spread round-robin over ``conversations`` conversations."""
    burst = []
    for i in range(messages):
        c, k = i % conversations, i // conversations
        user = _NAMES[c] if c < len(_NAMES) else f"user{c + 1}"
        burst.append(BurstMessage(f"demo:{user}", user, _TEXTS[(c * 3 + k) % len(_TEXTS)]))
    return burst


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# -- what the run has seen ---------------------------------------------------------------------


@dataclass
class Tracked:
    """One demo message, as last read from the store."""

    message_id: str
    conversation_id: str
    text: str
    enqueued_at: int
    status: MessageStatus = "queued"
    finished_at: int | None = None
    worker_id: str | None = None
    reply: str | None = None
    error: str | None = None
    finished_seen_s: float = 0.0

    @property
    def terminal(self) -> bool:
        return self.status in ("done", "dead_letter")

    @property
    def latency_s(self) -> float | None:
        if self.status != "done" or self.finished_at is None:
            return None
        return (self.finished_at - self.enqueued_at) / 1000


@dataclass(frozen=True)
class PlanLine:
    at_s: float
    action: str
    target: str
    reason: str
    result: str
    ok: bool


@dataclass
class RunState:
    t0: float
    total: int
    model_label: str
    max_workers: int
    messages: dict[str, Tracked] = field(default_factory=dict)
    finished: list[Tracked] = field(default_factory=list)
    plan_lines: list[PlanLine] = field(default_factory=list)
    workers: list[WorkerRecord] = field(default_factory=list)
    machines: list[Machine] = field(default_factory=list)
    open_launches: int = 0
    launched_at: dict[str, float] = field(default_factory=dict)  # machine id → monotonic
    ended_at: dict[str, float] = field(default_factory=dict)
    launch_of: dict[str, str] = field(default_factory=dict)  # machine id → launch id
    ordinal: dict[str, int] = field(default_factory=dict)  # launch id → 1, 2, …
    enqueue_done: bool = False
    failure: str | None = None
    closed_at: float | None = None

    def elapsed(self, now: float | None = None) -> float:
        return (now if now is not None else time.monotonic()) - self.t0

    def count(self, status: MessageStatus) -> int:
        return sum(1 for m in self.messages.values() if m.status == status)

    def latencies(self) -> list[float]:
        return [m.latency_s for m in self.messages.values() if m.latency_s is not None]

    def worker_seconds(self) -> float:
        end = self.closed_at if self.closed_at is not None else time.monotonic()
        return sum(self.ended_at.get(machine, end) - start for machine, start in self.launched_at.items())

    def our_workers(self) -> list[WorkerRecord]:
        return [w for w in self.workers if w.launch_id is not None and w.launch_id in self.ordinal]

    def worker_name(self, worker_id: str | None) -> str:
        if worker_id is None:
            return "-"
        launch_id = next((w.launch_id for w in self.workers if w.worker_id == worker_id), None)
        number = self.ordinal.get(launch_id or "")
        return f"w{number}" if number is not None else worker_id

    @property
    def settled(self) -> bool:
        """Every message ended, and the fleet is back to zero (no machines, no open launches)."""
        all_ended = all(m.terminal for m in self.messages.values())
        return self.enqueue_done and all_ended and not self.machines and self.open_launches == 0

    def phase(self) -> str:
        if not self.enqueue_done:
            return f"enqueuing the burst ({len(self.messages)}/{self.total})"
        if not all(m.terminal for m in self.messages.values()):
            return "processing"
        if self.machines or self.open_launches:
            return f"scaling back to zero (idle workers are drained after {SCALE_DOWN_WINDOW_S:g} s)"
        return "done"

    def record_tick(self, result: TickResult) -> None:
        now = time.monotonic()
        outcomes = {id(o.action): o for o in result.outcomes}
        for action in result.plan.actions:
            outcome = outcomes.get(id(action))
            if outcome is not None and outcome.ok and outcome.machine_id:
                if isinstance(action, Launch):
                    self.launched_at[outcome.machine_id] = now
                    if outcome.launch_id:
                        self.launch_of[outcome.machine_id] = outcome.launch_id
                        self.ordinal.setdefault(outcome.launch_id, len(self.ordinal) + 1)
                elif isinstance(action, Destroy | CollectOrphan):
                    self.ended_at.setdefault(outcome.machine_id, now)
            ok = outcome is not None and outcome.ok
            result_text = "-" if outcome is None else ("ok: " if ok else "FAILED: ") + outcome.detail
            target = self._target(action)
            if isinstance(action, Launch) and outcome is not None and outcome.launch_id in self.ordinal:
                target = f"w{self.ordinal[outcome.launch_id]}"
                result_text = result_text.split(" (", 1)[0]  # the worker id is long; wN names it
            self.plan_lines.append(PlanLine(self.elapsed(now), action.action, target, action.reason, result_text, ok))

    def record_tick_error(self, message: str) -> None:
        self.plan_lines.append(PlanLine(self.elapsed(), "error", "-", message, "retrying next tick", False))

    def _target(self, action: Action) -> str:
        if isinstance(action, Launch):
            return "new worker"
        worker = getattr(action, "worker_id", None)
        if worker:
            return self.worker_name(worker)
        machine = getattr(action, "machine_id", None)
        launch = self.launch_of.get(machine or "") or getattr(action, "launch_id", None)
        number = self.ordinal.get(launch or "")
        return f"w{number}" if number is not None else (machine or launch or "-")

    def boot_failures(self) -> list[str]:
        """Launch ids whose machine ended without its worker ever registering."""
        registered = {w.launch_id for w in self.workers}
        return [self.launch_of[m] for m in self.ended_at if m in self.launch_of and self.launch_of[m] not in registered]


@dataclass
class Outcome:
    """How the run ended, filled in as it goes; read after the event loop has finished."""

    t0: float
    phase: str = "starting"
    state: RunState | None = None
    setup_s: float | None = None
    openclaw_cached: bool | None = None
    failure: str | None = None
    interrupted_by: signal.Signals | None = None
    cleanup_problem: str | None = None
    stopped: list[str] = field(default_factory=list)  # what cleanup stopped, in order
    workers_stopped: int | None = None  # worker processes cleanup had to stop (0: all had exited)
    wall_s: float = 0.0


# -- the screen --------------------------------------------------------------------------------


class Screen:
    """Setup lines, then a live view on a terminal, or plain progress lines for logs and CI."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = console.is_terminal and not console.is_dumb_terminal

    def line(self, text: str, *, style: str | None = None) -> None:
        self.console.print(text, markup=False, highlight=False, style=style)

    @contextmanager
    def step(self, text: str) -> Iterator[None]:
        if self.live:
            with self.console.status(text):
                yield
        else:
            self.line(text)
            yield


def _excerpt(text: str | None, limit: int) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _queue_line(state: RunState) -> str:
    return (
        f"enqueued {len(state.messages)}/{state.total}  queued {state.count('queued')}  "
        f"processing {state.count('processing')}  done {state.count('done')}  "
        f"dead letters {state.count('dead_letter')}"
    )


def _workers_line(state: RunState) -> str:
    ours = state.our_workers()
    active = [w for w in ours if w.status == "active"]
    busy = sum(1 for w in active if w.busy_since is not None)
    draining = sum(1 for w in ours if w.status in ("draining", "stopping"))
    stopped = sum(1 for w in ours if w.status == "stopped")
    return (
        f"launched {len(state.launched_at)}  active {len(active)} (busy {busy}, idle {len(active) - busy})  "
        f"draining {draining}  stopped {stopped}  processes {len(state.machines)} (max {state.max_workers})"
    )


def _fleet_line(state: RunState) -> str:
    """Each worker still around: busy on which conversation, idle since when, or draining."""
    busy_on = {m.worker_id: m.conversation_id for m in state.messages.values() if m.status == "processing"}
    now_ms = time.time() * 1000
    parts = []
    for w in state.our_workers():
        if w.status == "stopped":
            continue
        how: str
        if w.status != "active":
            how = w.status
        elif w.busy_since is not None:
            how = f"busy {busy_on.get(w.worker_id, '')}".rstrip()
        else:
            how = f"idle {max(0.0, (now_ms - (w.idle_since or now_ms)) / 1000):.0f}s"
        parts.append(f"{state.worker_name(w.worker_id)} {how}")
    return "  ".join(parts) or "-"


def _latency_line(state: RunState) -> str:
    values = state.latencies()
    return (
        f"p50 {_seconds(percentile(values, 0.5))}  p95 {_seconds(percentile(values, 0.95))}  "
        f"(enqueue→reply over {len(values)} done)"
    )


_FIXED_ROWS = 14  # panel borders, the five head rows, each table's title, header and rule, the cursor line


def render(state: RunState, height: int = 40) -> RenderableType:
    """The live view, sized to ``height`` rows so the terminal never cuts it off."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold", no_wrap=True)
    head.add_column(no_wrap=True, overflow="ellipsis")
    head.add_row("queue", _queue_line(state))
    head.add_row("workers", _workers_line(state))
    head.add_row("fleet", _fleet_line(state))
    head.add_row("latency", _latency_line(state))
    head.add_row("phase", state.phase())
    parts: list[RenderableType] = [head]
    room = height - _FIXED_ROWS
    if room >= 2:
        plan_rows = max(1, min(6, room // 3))
        parts += [_plan_table(state, plan_rows), _replies_table(state, max(1, min(8, room - plan_rows)))]
    title = f"factory run · local fleet · model: {state.model_label} · {state.elapsed():.1f} s"
    return Panel(Group(*parts), title=title, title_align="left")


def _plan_table(state: RunState, rows: int) -> Table:
    plan = Table(
        title="autoscaler: last plan actions", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, expand=True
    )
    plan.add_column("t", justify="right", no_wrap=True, width=7)
    plan.add_column("action", no_wrap=True, width=8)
    plan.add_column("target", no_wrap=True, width=10)
    plan.add_column("reason", no_wrap=True, overflow="ellipsis", ratio=3)
    plan.add_column("result", no_wrap=True, overflow="ellipsis", ratio=2)
    for line in state.plan_lines[-rows:]:
        result = Text(line.result, style="" if line.ok else "red")
        plan.add_row(f"{line.at_s:.1f}s", line.action, line.target, line.reason, result)
    return plan


def _replies_table(state: RunState, rows: int) -> Table:
    replies = Table(
        title="replies: enqueue→reply latency", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, expand=True
    )
    replies.add_column("t", justify="right", no_wrap=True, width=7)
    replies.add_column("conversation", no_wrap=True, width=14)
    replies.add_column("message", no_wrap=True, overflow="ellipsis", ratio=3)
    replies.add_column("latency", justify="right", no_wrap=True, width=8)
    replies.add_column("worker", no_wrap=True, width=6)
    replies.add_column("reply", no_wrap=True, overflow="ellipsis", ratio=3)
    for m in state.finished[-rows:]:
        outcome = _seconds(m.latency_s) if m.status == "done" else Text("dead", style="red")
        answer = m.reply if m.status == "done" else m.error
        replies.add_row(
            f"{m.finished_seen_s:.1f}s",
            m.conversation_id,
            m.text,
            outcome,
            state.worker_name(m.worker_id),
            _excerpt(answer, 200),
        )
    return replies


async def show_live(screen: Screen, state: RunState) -> None:
    console = screen.console
    with Live(render(state, console.height), console=console, auto_refresh=False, redirect_stderr=False) as live:
        try:
            while True:
                live.update(render(state, console.height), refresh=True)
                await anyio.sleep(REFRESH_S)
        finally:
            live.update(render(state, console.height), refresh=True)


async def show_plain(screen: Screen, state: RunState) -> None:
    cursor = {"plan": 0, "done": 0}
    last_status = -PLAIN_STATUS_S

    def emit() -> None:
        lines = [
            (line.at_s, f"plan: {line.action} {line.target}: {line.reason} → {line.result}")
            for line in state.plan_lines[cursor["plan"] :]
        ]
        for m in state.finished[cursor["done"] :]:
            by = state.worker_name(m.worker_id)
            if m.status == "done":
                text = f"reply {m.conversation_id} in {_seconds(m.latency_s)} by {by}: {_excerpt(m.reply, 100)}"
            else:
                text = f"dead-lettered {m.conversation_id} (last tried by {by}): {m.error}"
            lines.append((m.finished_seen_s, text))
        for at_s, text in sorted(lines, key=lambda pair: pair[0]):
            screen.line(f"[{at_s:6.1f}s] {text}")
        cursor["plan"], cursor["done"] = len(state.plan_lines), len(state.finished)

    def status() -> None:
        screen.line(
            f"[{state.elapsed():6.1f}s] queue: {_queue_line(state)} | workers: {_workers_line(state)} | "
            f"latency: {_latency_line(state)}"
        )

    try:
        while True:
            emit()
            if state.elapsed() - last_status >= PLAIN_STATUS_S:
                status()
                last_status = state.elapsed()
            await anyio.sleep(OBSERVE_S)
    finally:
        emit()
        status()


# -- the fleet phase ---------------------------------------------------------------------------


async def enqueue_burst(store: Store, state: RunState, burst: Sequence[BurstMessage], run_id: str) -> None:
    interval = min(BURST_INTERVAL_S, BURST_WINDOW_S / max(1, len(burst)))
    for i, item in enumerate(burst):
        if i:
            await anyio.sleep(interval)
        request = EnqueueRequest(
            conversation_id=item.conversation_id,
            agent_key="default",
            payload=MessagePayload(
                provider="app",
                provider_user_id=item.user,
                message_text=item.text,
                external_message_id=f"factory-run-{run_id}-{i}",
            ),
        )
        message_id = await store.enqueue(request)
        record = await store.get_message(message_id)
        enqueued_at = record.enqueued_at if record is not None else await store.now_ms()
        state.messages[message_id] = Tracked(message_id, item.conversation_id, item.text, enqueued_at)
    state.enqueue_done = True


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


async def _refresh_message(store: Store, state: RunState, tracked: Tracked) -> None:
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


async def _reply_to(store: Store, tracked: Tracked) -> str | None:
    conversation = await store.get_conversation(tracked.conversation_id)
    history = conversation.history if conversation is not None else []
    for i in range(len(history) - 1, -1, -1):
        if history[i].role == "user" and history[i].content == tracked.text:
            after = history[i + 1 : i + 2]
            return after[0].content if after and after[0].role == "assistant" else None
    return None


async def observe(store: Store, provider: LocalProvider, state: RunState, settled: anyio.Event) -> None:
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
    return f" (the last one said: {_excerpt(lines[-1], 200)})" if lines else ""


async def run_fleet(
    screen: Screen,
    state: RunState,
    store: Store,
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


# -- setup and cleanup -------------------------------------------------------------------------


@contextmanager
def exclusive(demo: Path) -> Iterator[None]:
    """One ``factory run`` per demo folder: a second one fails at once instead of resetting ours."""
    demo.mkdir(parents=True, exist_ok=True)
    with (demo / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FactoryError(f"another `factory run` is using {demo}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def reset_demo(demo: Path, *, reset_store: bool) -> int:
    """Stop workers an earlier (killed) run left behind, then clear its files; returns how many."""
    leftovers = LocalProvider(LocalConfig(state_dir=demo / "local", stop_timeout_s=WORKER_STOP_TIMEOUT_S))
    try:
        stopped = await leftovers.destroy_all()
    finally:
        await leftovers.aclose()

    def clear() -> None:
        for sub in ("local", "gateway"):
            shutil.rmtree(demo / sub, ignore_errors=True)
        names = ["stub-llm.jsonl", "stub-llm.out"]
        if reset_store:
            names += [DEMO_STORE.name + suffix for suffix in ("", "-wal", "-shm")]
        for name in names:
            (demo / name).unlink(missing_ok=True)

    await anyio.to_thread.run_sync(clear)
    return stopped


async def _shielded(call: Callable[[], Awaitable[object]]) -> None:
    with anyio.CancelScope(shield=True):
        await call()


async def _stop_blocking(outcome: Outcome, what: str, call: Callable[[], object]) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(call)
        outcome.stopped.append(what)


async def _stop_gateway(outcome: Outcome, runtime: GatewayRuntime) -> None:
    await runtime.astop()  # shielded inside; idempotent (a failed start has stopped it already)
    outcome.stopped.append("gateway")


async def install_openclaw(
    screen: Screen, env: Mapping[str, str], outcome: Outcome, budget_s: float
) -> OpenClawInstall:
    cache = default_cache_dir(env)
    cached = (cache / "node_modules" / "openclaw" / "openclaw.mjs").is_file()
    started = time.monotonic()
    text = f"checking OpenClaw {OPENCLAW_VERSION} in {cache}"
    if not cached:
        text = f"installing OpenClaw {OPENCLAW_VERSION} into {cache} (first run only, about a minute)…"
    with screen.step(text):
        try:
            install = await anyio.to_thread.run_sync(partial(ensure_openclaw, env, timeout_s=max(60.0, budget_s)))
        except GatewayError as exc:
            raise FactoryError(f"{_first_line(exc)} (npm log: {cache / 'npm-install.log'})") from None
    took = time.monotonic() - started
    outcome.openclaw_cached = cached and took < 5
    how = "reused the cached install" if outcome.openclaw_cached else f"installed in {took:.0f} s"
    screen.line(f"OpenClaw {OPENCLAW_VERSION}: {how} ({install.root})")
    return install


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0].removesuffix("; last output:").rstrip(":")


async def start_gateway(
    screen: Screen, stack: AsyncExitStack, install: OpenClawInstall, demo: Path, plan: ModelPlan, outcome: Outcome
) -> GatewayRuntime:
    model: ModelChoice
    if plan.hosted is None:
        with anyio.CancelScope(shield=True):  # started means stopped: never lose the handle to a cancel
            stub = await anyio.to_thread.run_sync(
                partial(StubLLMProcess.start, (demo / "stub-llm.jsonl").absolute(), output=demo / "stub-llm.out")
            )
        stack.push_async_callback(_stop_blocking, outcome, "stub model", stub.stop)
        await anyio.lowlevel.checkpoint()
        model = CompatibleModel(base_url=stub.base_url)
    else:
        model = plan.hosted
    runtime = GatewayRuntime(install, demo / "gateway", model=model, agents=(AGENT,))
    stack.push_async_callback(_stop_gateway, outcome, runtime)
    started = time.monotonic()
    try:
        with screen.step("starting the OpenClaw gateway (10–20 s on 2 cores)…"):
            await runtime.astart()
        ready = time.monotonic() - started
        with screen.step(f"warming up agent {AGENT!r} (one model call)…"):
            await runtime.awarm_up(timeout_s=WARM_UP_TIMEOUT_S)
    except (GatewayError, httpx.HTTPError) as exc:
        hint = f"; check {plan.hosted.key_env} and FACTORY_RUN_MODEL" if plan.hosted is not None else ""
        raise FactoryError(
            f"the OpenClaw gateway failed: {_first_line(exc)}{hint} (log: {runtime.output_path})"
        ) from None
    warm = time.monotonic() - started - ready
    screen.line(f"gateway: ready on {runtime.url} in {ready:.1f} s, warm-up {warm:.1f} s (log: {runtime.output_path})")
    return runtime


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
        budget_machines=None,
        launch_timeout_s=120.0,
        drain_deadline_s=60.0,
        worker_store=None,
        gateway_url=runtime.url,
        gateway_token=runtime.token,
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
    with anyio.move_on_after(opts.timeout_s) as overall, exclusive(opts.demo):
        async with AsyncExitStack() as stack:
            outcome.phase = "resetting the demo folder"
            leftovers = await reset_demo(opts.demo, reset_store=opts.reset_store)
            if leftovers:
                screen.line(f"stopped {leftovers} worker(s) an earlier run left behind")
            outcome.phase = "installing OpenClaw"
            install = await install_openclaw(screen, env, outcome, opts.timeout_s - (time.monotonic() - outcome.t0))
            outcome.phase = "starting the gateway"
            runtime = await start_gateway(screen, stack, install, opts.demo, plan, outcome)
            store = open_store(opts.store)
            stack.push_async_callback(_shielded, store.aclose)
            scale = fleet_settings(runtime, opts.max_workers)
            config = LocalConfig(
                state_dir=opts.demo / "local",
                stop_timeout_s=WORKER_STOP_TIMEOUT_S,
                # Workers need the gateway, not the model: provider keys stay with the gateway.
                unset_env=("FLY_API_TOKEN", "DIGITALOCEAN_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"),
                env={"FACTORY_GRACE_S": "10"},
            )
            provider = LocalProvider(config)
            state = RunState(outcome.t0, opts.messages, plan.label, opts.max_workers)
            outcome.state = state
            stack.push_async_callback(close_fleet, provider, state, outcome)
            reconciler = Reconciler(store, provider, scaling_policy(scale), launch_specs(scale, opts.store, "local"))
            screen.line(
                f"autoscaler: local provider, affinity (one worker per active conversation, max {opts.max_workers}), "
                f"scale-down after {SCALE_DOWN_WINDOW_S:g} s idle, tick every {TICK_S:g} s; "
                f"worker logs in {config.state_dir}/"
            )
            outcome.setup_s = time.monotonic() - outcome.t0
            outcome.phase = "running the fleet"
            await run_fleet(screen, state, store, provider, reconciler, demo_burst(opts.conversations, opts.messages))
            outcome.failure = state.failure
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


# -- the summary -------------------------------------------------------------------------------


def summary_of(outcome: Outcome, plan: ModelPlan) -> dict[str, Any]:
    state = outcome.state
    latencies = state.latencies() if state is not None else []
    p50, p95 = percentile(latencies, 0.5), percentile(latencies, 0.95)
    return {
        "model": plan.label,
        "messages": state.total if state is not None else 0,
        "processed": state.count("done") if state is not None else 0,
        "deadLettered": state.count("dead_letter") if state is not None else 0,
        "latencyP50S": None if p50 is None else round(p50, 3),
        "latencyP95S": None if p95 is None else round(p95, 3),
        "workersLaunched": len(state.launched_at) if state is not None else 0,
        "workerSeconds": round(state.worker_seconds(), 1) if state is not None else 0.0,
        "setupS": None if outcome.setup_s is None else round(outcome.setup_s, 1),
        "wallS": round(outcome.wall_s, 1),
        "openclawCached": outcome.openclaw_cached,
    }


def print_summary(screen: Screen, summary: dict[str, Any]) -> None:
    p50, p95 = summary["latencyP50S"], summary["latencyP95S"]
    table = Table(title="summary", title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column(style="bold")
    table.add_column()
    for label, value in [
        ("processed", f"{summary['processed']} of {summary['messages']}"),
        ("dead-lettered", str(summary["deadLettered"])),
        ("latency p50 / p95", f"{_seconds(p50)} / {_seconds(p95)} (enqueue→reply)"),
        ("workers launched", str(summary["workersLaunched"])),
        ("worker-seconds", f"{summary['workerSeconds']:.1f}"),
        ("setup (install + gateway)", _seconds(summary["setupS"])),
        ("wall time", _seconds(summary["wallS"])),
    ]:
        table.add_row(label, value)
    screen.console.print(table)
    screen.line(
        f"factory run: processed {summary['processed']}, dead-lettered {summary['deadLettered']}, "
        f"p50 {_seconds(p50)}, p95 {_seconds(p95)}, worker-seconds {summary['workerSeconds']:.1f}, "
        f"wall {summary['wallS']:.1f} s"
    )


def _factory_error(exc: BaseException) -> FactoryError | None:
    """The first of our errors inside (nested) exception groups, if that is what ended the run."""
    if isinstance(exc, FactoryError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _factory_error(inner)
            if found is not None:
                return found
    return None


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
    opts = RunOptions(
        conversations=conversations,
        messages=messages,
        max_workers=max_workers,
        store=store_settings(store if store is not None else str(DEMO_STORE)),
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
        found = _factory_error(group)
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
