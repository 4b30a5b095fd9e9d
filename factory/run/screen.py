"""The screen: setup lines, then a live view on a terminal or plain progress lines for logs and CI."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from contracts.figures import percentile
from factory.run.demo import OBSERVE_S
from factory.run.state import RunState
from factory.safe_text import one_line, plain

REFRESH_S = 0.25  # the live view's refresh (4 per second)
PLAIN_STATUS_S = 5.0  # a status line this often when stdout is not a terminal


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


def excerpt(text: str | None, limit: int) -> str:
    """Replies, errors and log lines on one line, inert (they are model output and worker logs)."""
    return one_line(" ".join((text or "").split()), limit)


def seconds(value: float | None) -> str:
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
        f"p50 {seconds(percentile(values, 0.5))}  p95 {seconds(percentile(values, 0.95))}  "
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
        result = plain(line.result, style="" if line.ok else "red")
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
        outcome = seconds(m.latency_s) if m.status == "done" else Text("dead", style="red")
        answer = m.reply if m.status == "done" else m.error
        replies.add_row(
            f"{m.finished_seen_s:.1f}s",
            m.conversation_id,
            m.text,
            outcome,
            state.worker_name(m.worker_id),
            excerpt(answer, 200),
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
    # From what is new: a later phase of the run (the memory check) does not repeat the earlier lines.
    cursor = {"plan": len(state.plan_lines), "done": len(state.finished)}
    last_status = -PLAIN_STATUS_S

    def emit() -> None:
        lines = [
            (line.at_s, f"plan: {line.action} {line.target}: {line.reason} → {line.result}")
            for line in state.plan_lines[cursor["plan"] :]
        ]
        for m in state.finished[cursor["done"] :]:
            by = state.worker_name(m.worker_id)
            if m.status == "done":
                text = f"reply {m.conversation_id} in {seconds(m.latency_s)} by {by}: {excerpt(m.reply, 100)}"
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
