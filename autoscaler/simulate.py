"""A simulated fleet on a simulated clock: conversations, workers, machines and a launch ledger.

The property tests drive the real planner against it (does the fleet converge? is a busy worker
ever destroyed?) and ``make bench`` replays traffic traces through it to compare policies.

The world is deliberately simple and explicit: a machine boots for ``boot_s`` before its worker
registers; an active idle worker takes the oldest ready conversation's next message (or, when
pinned, only its own conversation's); a job takes the duration the trace gives it; a draining
worker exits as soon as it is idle; a worker with an idle timeout exits on its own.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler import plan as actions
from autoscaler.provider import Machine
from contracts.models import DemandSnapshot, LaunchRecord, WorkerView


@dataclass
class SimMessage:
    conversation: str
    arrived_ms: int
    duration_ms: int


@dataclass
class SimWorker:
    worker_id: str
    launch_id: str
    machine_id: str
    registered_ms: int
    status: str = "active"
    status_since_ms: int = 0
    idle_since_ms: int = 0
    busy_until_ms: int | None = None
    busy_conversation: str | None = None
    pinned: str | None = None
    exited: bool = False


@dataclass
class SimMachine:
    machine_id: str
    launch_id: str
    created_ms: int
    state: str = "starting"


@dataclass
class World:
    boot_s: float = 20.0
    idle_exit_s: float | None = None
    # Pinned workers serve one conversation each, like upstream's sticky workers.
    pinned: bool = False
    now_ms: int = 0
    queues: dict[str, deque[SimMessage]] = field(default_factory=dict)
    workers: dict[str, SimWorker] = field(default_factory=dict)
    machines: dict[str, SimMachine] = field(default_factory=dict)
    ledger: dict[str, LaunchRecord] = field(default_factory=dict)
    waits_ms: list[int] = field(default_factory=list)
    machine_ms: int = 0
    busy_destroyed: int = 0
    done: int = 0
    pins: dict[str, str | None] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # ------------------------------------------------------------------ observation

    def inflight(self) -> set[str]:
        return {w.busy_conversation for w in self.workers.values() if w.busy_conversation is not None}

    def ready(self) -> list[str]:
        busy = self.inflight()
        return [c for c, q in self.queues.items() if q and c not in busy]

    def demand(self) -> DemandSnapshot:
        ready = sorted(self.ready(), key=lambda c: (self.queues[c][0].arrived_ms, c))
        oldest = min((self.queues[c][0].arrived_ms for c in ready), default=None)
        return DemandSnapshot(
            now=self.now_ms,
            ready_conversations=len(ready),
            inflight_conversations=len(self.inflight()),
            retrying_conversations=0,
            scheduled_conversations=0,
            oldest_ready_age_ms=None if oldest is None else self.now_ms - oldest,
            workers=[self._view(w) for w in self.workers.values() if w.status != "stopped"],
            ready_conversation_ids=ready,
        )

    def _view(self, w: SimWorker) -> WorkerView:
        busy = w.busy_conversation is not None
        return WorkerView(
            worker_id=w.worker_id,
            provider="sim",
            status=w.status,  # type: ignore[arg-type]  # one of the WorkerStatus literals by construction
            heartbeat_age_ms=0,
            busy=busy,
            busy_since=None,
            idle_since=None if busy else w.idle_since_ms,
            status_since=w.status_since_ms,
            launch_id=w.launch_id,
            conversation_id=w.pinned or w.busy_conversation,
            pinned=w.pinned is not None,
        )

    def fleet(self) -> list[Machine]:
        return [
            Machine(
                machine_id=m.machine_id,
                provider="sim",
                state=m.state,  # type: ignore[arg-type]  # one of the MachineState literals by construction
                launch_id=m.launch_id,
                created_at_ms=m.created_ms,
            )
            for m in self.machines.values()
        ]

    def open_launches(self) -> list[LaunchRecord]:
        return [r for r in self.ledger.values() if r.state in ("requested", "running")]

    # ------------------------------------------------------------------ actions

    def apply(self, planned: Sequence[actions.Action]) -> None:
        for action in planned:
            actions.dispatch(action, self)

    # The world's side of autoscaler.plan.PlanHandler: each action takes effect at once.

    def on_launch(self, action: actions.Launch) -> None:
        self.launch(pinned=action.conversation_id)

    def on_drain(self, action: actions.Drain) -> None:
        w = self.workers[action.worker_id]
        w.status, w.status_since_ms = "draining", self.now_ms

    def on_destroy(self, action: actions.Destroy) -> None:
        self.destroy(action.machine_id)
        if action.worker_id is not None:
            self.workers[action.worker_id].status = "stopped"

    def on_collect_orphan(self, action: actions.CollectOrphan) -> None:
        self.destroy(action.machine_id)

    def on_retire_worker(self, action: actions.RetireWorker) -> None:
        self.workers[action.worker_id].status = "stopped"

    def on_resolve_launch(self, action: actions.ResolveLaunch) -> None:
        self._close_launch(action.launch_id)

    def on_close_launch(self, action: actions.CloseLaunch) -> None:
        self._close_launch(action.launch_id)

    def _close_launch(self, launch_id: str) -> None:
        record = self.ledger[launch_id]
        self.ledger[launch_id] = record.model_copy(update={"state": "gone"})

    def launch(self, pinned: str | None = None) -> str:
        n = next(self._ids)
        launch_id, machine_id = f"L{n}", f"m{n}"
        self.ledger[launch_id] = LaunchRecord(
            launch_id=launch_id,
            provider="sim",
            requested_at=self.now_ms,
            state="running",
            machine_id=machine_id,
            conversation_id=pinned,
        )
        self.machines[machine_id] = SimMachine(machine_id, launch_id, self.now_ms)
        self.pins[launch_id] = pinned
        return launch_id

    def destroy(self, machine_id: str) -> None:
        machine = self.machines.pop(machine_id, None)
        if machine is None:
            return
        for w in self.workers.values():
            if w.machine_id == machine_id and w.busy_conversation is not None:
                self.busy_destroyed += 1
                # The message goes back to its conversation's queue (a lease would expire).
                self.queues[w.busy_conversation].appendleft(
                    SimMessage(w.busy_conversation, self.now_ms, int(w.busy_until_ms or self.now_ms) - self.now_ms)
                )
                w.busy_conversation = w.busy_until_ms = None
            if w.machine_id == machine_id:
                w.status = "stopped"
        record = self.ledger.get(machine.launch_id)
        if record is not None:
            self.ledger[machine.launch_id] = record.model_copy(update={"state": "gone"})

    # ------------------------------------------------------------------ for drivers other than the planner
    # The benchmark (bench/autoscaler_bench.py) also drives the world with policies that do not
    # go through plan(): these read what such policies look at and act the way they act.

    def queued_messages(self) -> int:
        """Messages waiting in every conversation's queue, the in-flight ones not counted (a queue-length metric)."""
        return sum(len(q) for q in self.queues.values())

    def active_conversations(self) -> set[str]:
        """Conversations with a message queued or in flight (what upstream calls active)."""
        return {c for c, q in self.queues.items() if q} | self.inflight()

    def reap_exited(self) -> int:
        """Destroy every machine whose worker has exited on its own; return how many."""
        exited = [m.machine_id for m in self.machines.values() if m.state == "stopped"]
        for machine_id in exited:
            self.destroy(machine_id)
        return len(exited)

    def destroy_newest(self, count: int) -> int:
        """Destroy ``count`` machines the way a Kubernetes ReplicaSet picks pods to scale down.

        Machines still booting go first, then the newest; whether the worker is busy plays no
        part (a busy one's message goes back to its queue and counts in ``busy_destroyed``).
        Return how many were destroyed.
        """
        victims = sorted(
            self.machines.values(),
            key=lambda m: (m.state != "starting", -m.created_ms, m.machine_id),
        )[: max(0, count)]
        for m in victims:
            self.destroy(m.machine_id)
        return len(victims)

    def next_change_ms(self) -> int | None:
        """The soonest moment (``now_ms`` at the earliest) at which the world changes by itself, or None.

        That is a machine finishing its boot, a job finishing, or an idle worker reaching
        ``idle_exit_s``. Nothing happens on its own before it, so a driver may ``step`` straight
        there instead of in small fixed steps (then ``step(0)`` after it adds messages or applies
        actions, so idle workers take the new work and drained ones exit at once).
        """
        times: list[int] = []
        for m in self.machines.values():
            if m.state == "starting":
                times.append(m.created_ms + math.ceil(self.boot_s * 1000))
        for w in self.workers.values():
            if w.exited or w.machine_id not in self.machines:
                continue
            if w.busy_until_ms is not None:
                times.append(w.busy_until_ms)
            elif self.idle_exit_s is not None and w.status == "active":
                times.append(w.idle_since_ms + math.ceil(self.idle_exit_s * 1000))
        return max(min(times), self.now_ms) if times else None

    # ------------------------------------------------------------------ time

    def arrive(self, message: SimMessage) -> None:
        self.queues.setdefault(message.conversation, deque()).append(message)

    def step(self, dt_ms: int) -> None:
        """Advance the clock by ``dt_ms``, running boots, jobs, drains and idle exits."""
        # Every machine that exists costs time, booting or stopped, until it is destroyed.
        self.machine_ms += dt_ms * len(self.machines)
        self.now_ms += dt_ms
        for m in self.machines.values():
            if m.state == "starting" and self.now_ms - m.created_ms >= self.boot_s * 1000:
                m.state = "running"
                self._register(m)
        for w in self.workers.values():
            if w.busy_until_ms is not None and w.busy_until_ms <= self.now_ms:
                w.busy_conversation, w.busy_until_ms, w.idle_since_ms = None, None, self.now_ms
                self.done += 1
        for w in sorted(self.workers.values(), key=lambda w: w.worker_id):
            self._work(w)

    def _register(self, m: SimMachine) -> None:
        worker_id = f"w-{m.launch_id}"
        self.workers[worker_id] = SimWorker(
            worker_id=worker_id,
            launch_id=m.launch_id,
            machine_id=m.machine_id,
            registered_ms=self.now_ms,
            status_since_ms=self.now_ms,
            idle_since_ms=self.now_ms,
            pinned=self.pins.get(m.launch_id),
        )

    def _work(self, w: SimWorker) -> None:
        machine = self.machines.get(w.machine_id)
        if w.exited or machine is None or w.busy_conversation is not None:
            return
        if w.status != "active":
            self._exit(w, machine)
            return
        ready = [c for c in self.ready() if w.pinned is None or c == w.pinned]
        if ready:
            conv = min(ready, key=lambda c: (self.queues[c][0].arrived_ms, c))
            msg = self.queues[conv].popleft()
            self.waits_ms.append(self.now_ms - msg.arrived_ms)
            w.busy_conversation, w.busy_until_ms = conv, self.now_ms + msg.duration_ms
            if self.pinned and w.pinned is None:
                w.pinned = conv
            return
        if self.idle_exit_s is not None and self.now_ms - w.idle_since_ms >= self.idle_exit_s * 1000:
            self._exit(w, machine)

    def _exit(self, w: SimWorker, machine: SimMachine) -> None:
        w.exited = True
        machine.state = "stopped"
