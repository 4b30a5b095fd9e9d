"""What the run has seen: the demo's messages, the autoscaler's actions, the fleet, how it ended."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autoscaler.plan import Action, CollectOrphan, Destroy, Launch
from autoscaler.provider import Machine
from autoscaler.reconciler import TickResult
from contracts.models import MessageStatus, WorkerRecord
from factory.run.demo import SCALE_DOWN_WINDOW_S

if TYPE_CHECKING:
    from factory.run.memory import MemoryCheck


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
    memory: MemoryCheck | None = None  # the conversation moved to a fresh machine
