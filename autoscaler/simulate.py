"""A simulated fleet on a simulated clock, honest about what a platform costs and how it behaves.

The property tests drive the real planner against it (does the fleet converge? is a busy worker
ever destroyed?) and ``make bench`` replays traffic traces through it to compare policies.

What it models, per provider (``ProviderProfile``; ``FLY`` and ``DIGITALOCEAN`` below):

* **boot**: a created machine runs after a time drawn from ``create_s``, a parked (stopped) one
  after ``start_s``; then its worker registers after ``ready_s`` more (the gateway start). A
  pinned machine first prepares its agent (``prepare_s``), and one that restores a snapshot starts
  its gateway slower (``restore_s``: it opens the agent's sessions). A parked machine started for
  a conversation (``Start.conversation_id``, Fly's update of the stopped machine first) boots
  pinned like a pinned launch, after one more call answered as slowly as a start (Fly documents
  no figure for an update); parked again, it is unpinned;
* **rate limits and 429s**: creates go through the platform's token bucket (Fly: 1/s, burst 3 per
  app; DigitalOcean: 250/min for every call). A client that paces itself (ours) waits for its
  slot, and still meets a 429 now and then (``rate_429_p``: one ``retry_after_s`` more); a client
  that does not (upstream's) has a create refused when the bucket is empty, and that spawn is lost;
* **failures**: a create refused outright (``create_fail_p``), a machine whose worker never
  registers (``boot_fail_p``: it runs, billed, until the launch timeout);
* **list lag**: a new machine is missing from lists for ``list_lag_s``;
* **drain latency**: a worker that exits leaves its machine ``stopping`` for ``stop_s``; it says
  so (status stopped, as ``factory worker run`` records) once its snapshot is uploaded, and the
  demand snapshot shows it stopped for ``contracts.rules.EXITED_VISIBLE_MS``, as the stores do;
* **billing**: per second from create to destroy, with the platform's minimum per machine
  (``min_billed_s``); a parked or stopped machine costs ``parked_cost`` of a running one (Fly:
  its root filesystem only; DigitalOcean: all of it, a powered-off droplet bills in full); with
  ``auto_destroy`` (Fly machines created with it) a machine is gone once its worker has exited;
* **suspend** (Fly only, ``can_suspend``): a suspended machine bills as a stopped one and a
  resume takes ``start_s`` with its worker and gateway as they were; Fly does not guarantee a
  resume (fleet-apis §1.3), so with ``resume_fail_p`` it boots afresh and the gateway's start
  (``ready_s``) is paid again;
* **switching**: a worker taking a conversation it did not serve last (or its first one) spends
  ``switch_s`` on a fresh session and the history load before the turn starts;
* **sticky workers**: a worker of a ``sticky`` launch pins itself to the conversation of its first
  job (not to one whose memory is in a snapshot already, or with another worker pinned to it), as
  ``worker.loop`` does;
* **the hold**: a conversation whose pinned worker is active and was heard from within
  ``contracts.rules.HOLD_MS`` (its machine runs, or was suspended or died less than that ago) waits
  for that worker; no unpinned worker takes it, as the stores' claim rules (``hold=False``: the
  race the stores had before it);
* **memory**: a conversation's agent state is where its latest turn ran, and in a snapshot once a
  worker pinned to it runs out of work after that turn (``snapshot_when_idle``) or exits gracefully
  with turns unsaved (a drain, an idle exit; a destroyed machine, or one whose resume boots afresh,
  takes none). A snapshot takes ``snapshot_s``: an idle worker takes no job until it is up (the
  store sees it idle from its complete on), an exiting one stops that much later. A turn of a
  conversation served before has its memory when the worker ran that latest turn, or is pinned to
  the conversation and restored a snapshot holding it at boot; any other worker has only the
  stored history window (``returning``, ``forgot``).

Everything random is drawn from one ``random.Random(seed)``, so a run is reproducible. Time moves
from event to event (``advance``); nothing happens between events. The wait of a message is from
its arrival to the start of its turn (boot, queueing, a session switch: all included).
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from autoscaler import plan as actions
from autoscaler.provider import Machine, MachineState
from contracts.models import (
    RECENT_GAPS,
    DemandSnapshot,
    LaunchRecord,
    MachineRef,
    RecentConversation,
    WorkerView,
)
from contracts.rules import exit_visible, holds

Range = tuple[float, float]


@dataclass(frozen=True)
class ProviderProfile:
    """How one platform behaves and bills, as the simulator charges it (see the module docstring)."""

    name: str
    create_s: Range
    start_s: Range
    ready_s: Range
    stop_s: Range
    create_rate_per_s: float
    create_burst: int
    # Every other call shares the create bucket (DigitalOcean counts all calls per token);
    # False: machine actions have their own per-machine buckets (Fly), never the bottleneck here.
    calls_share_bucket: bool
    rate_429_p: float
    retry_after_s: float
    create_fail_p: float
    boot_fail_p: float
    list_lag_s: float
    parked_cost: float
    min_billed_s: float
    switch_s: Range
    can_prefill: bool
    can_suspend: bool = False
    resume_fail_p: float = 0.0
    # A pinned machine's boot runs `factory worker prepare` before its gateway starts; one that
    # restores a snapshot then starts the gateway on a state dir holding the agent's sessions, which
    # is slower. A worker's snapshot (archive and upload) comes before its next job or its exit.
    prepare_s: Range = (0.0, 0.0)
    restore_s: Range = (0.0, 0.0)
    snapshot_s: Range = (0.0, 0.0)

    def draw(self, rng: random.Random, span: Range) -> int:
        return int(1000 * rng.uniform(*span))


# Fly Machines (reference fleet-apis §1): create 2–5 s, start from stopped about a second; 1 create/s
# with a burst of 3 per app; per-second billing; a stopped machine bills its root filesystem only
# ($0.15/GB-month against ~$11.8/month for shared-cpu-1x with 2 GB: ~1 % for a 0.8 GB image).
# ready_s is the gateway's start before the first claim as measured on this 2-core machine before
# the cold-start work (6–17 s); bench/coldstart.py measures it again, before and after.
# The memory steps, the same on every platform (measured on this machine): prepare 0.5 s, the gateway
# 1.3–2.5 s slower on a restored 12-turn state dir (``python -m bench coldstart``); a snapshot of a
# 200-turn session 0.5 s (``python -m bench memory``), less for a shorter one.
PREPARE_S: Range = (0.4, 0.6)
RESTORE_S: Range = (1.3, 2.5)
SNAPSHOT_S: Range = (0.2, 0.6)
FLY = ProviderProfile(
    name="fly",
    create_s=(2.0, 5.0),
    start_s=(0.8, 1.5),
    ready_s=(6.0, 17.0),
    stop_s=(1.0, 3.0),
    create_rate_per_s=1.0,
    create_burst=3,
    calls_share_bucket=False,
    rate_429_p=0.02,
    retry_after_s=1.0,
    create_fail_p=0.01,
    boot_fail_p=0.005,
    list_lag_s=2.0,
    parked_cost=0.01,
    min_billed_s=0.0,
    switch_s=(0.5, 1.5),
    can_prefill=True,
    # Suspend: billed as stopped (fleet-apis §1.3); a resume is modelled as a start from stopped
    # (no figure is documented) and fails over to a fresh boot 5 % of the time (an estimate:
    # Fly says only that a resume is not guaranteed).
    can_suspend=True,
    resume_fail_p=0.05,
    prepare_s=PREPARE_S,
    restore_s=RESTORE_S,
    snapshot_s=SNAPSHOT_S,
)
# DigitalOcean (§3): a droplet boots and pulls the worker image in 45–60 s; a powered-off one boots
# again in 15–25 s (its image is on disk; estimate, unverified); 250 calls per minute per token for
# everything; per-second billing with a 60 s minimum; powered off still bills in full.
DIGITALOCEAN = ProviderProfile(
    name="digitalocean",
    create_s=(45.0, 60.0),
    start_s=(15.0, 25.0),
    ready_s=(6.0, 17.0),
    stop_s=(5.0, 15.0),
    create_rate_per_s=250 / 60,
    create_burst=10,
    calls_share_bucket=True,
    rate_429_p=0.01,
    retry_after_s=2.0,
    create_fail_p=0.01,
    boot_fail_p=0.005,
    list_lag_s=5.0,
    parked_cost=1.0,
    min_billed_s=60.0,
    switch_s=(0.5, 1.5),
    can_prefill=False,
    prepare_s=PREPARE_S,
    restore_s=RESTORE_S,
    snapshot_s=SNAPSHOT_S,
)
PROFILES = {p.name: p for p in (FLY, DIGITALOCEAN)}


def ideal(boot_s: float = 20.0, **changes: Any) -> ProviderProfile:
    """A platform without surprises, for tests of the planner's own rules: a fixed boot of
    ``boot_s`` (ready at once after it), no limits, failures, lag, minimums or switching cost."""
    fields: dict[str, Any] = {
        "name": "ideal",
        "create_s": (boot_s, boot_s),
        "start_s": (1.0, 1.0),
        "ready_s": (0.0, 0.0),
        "stop_s": (0.0, 0.0),
        "create_rate_per_s": 1e9,
        "create_burst": 1_000_000,
        "calls_share_bucket": False,
        "rate_429_p": 0.0,
        "retry_after_s": 0.0,
        "create_fail_p": 0.0,
        "boot_fail_p": 0.0,
        "list_lag_s": 0.0,
        "parked_cost": 0.01,
        "min_billed_s": 0.0,
        "switch_s": (0.0, 0.0),
        "can_prefill": True,
        "can_suspend": True,
        "resume_fail_p": 0.0,
    }
    return ProviderProfile(**{**fields, **changes})


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
    busy_message: SimMessage | None = None
    last_conversation: str | None = None
    pinned: str | None = None
    # The turns of its pinned conversation held by the snapshot it restored at boot.
    restored: int | None = None
    exited: bool = False
    # Reports its launch id when registering (a worker started by hand, or an old image, may not).
    reports_launch: bool = True
    crashed_ms: int | None = None  # its machine died under it: its heartbeat ages from here
    suspended_ms: int | None = None  # frozen with its machine: no heartbeat, no claims, from here


@dataclass
class SimMachine:
    machine_id: str
    launch_id: str
    created_ms: int
    state: str = "starting"  # starting, running, stopping, stopped, suspended
    booted: bool = False  # the worker boot on it has registered
    generation: int = 0  # bumps on every (re)start and stop: stale events are dropped
    running_ms: int = 0
    parked_ms: int = 0


class _Bucket:
    """A token bucket on the simulated clock (ms): the platform's own limit, server side."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_ms = rate_per_s / 1000
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = 0

    def _refill(self, now: int) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_ms)
            self.stamp = now

    def reserve(self, now: int) -> int:
        """Take a token (going into debt); when it may be used."""
        self._refill(now)
        self.tokens -= 1
        if self.tokens >= 0:
            return now
        return now + math.ceil(-self.tokens / self.rate_per_ms)

    def try_take(self, now: int) -> bool:
        """A call that does not wait: refused (a 429) when no token is at hand."""
        self._refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass
class World:
    profile: ProviderProfile = FLY
    seed: int = 0
    idle_exit_s: float | None = None
    # Pinned workers serve one conversation each, like upstream's sticky workers.
    pinned: bool = False
    # Fly's auto_destroy: a machine whose worker exited is gone (no pool); else it stays stopped.
    auto_destroy: bool = True
    # Creates wait for their slot in the platform's bucket (ours); False: refused when it is empty.
    paced: bool = True
    # The stores' hold (contracts.rules.holds). False: the stores as they were before it, where a
    # free unpinned worker races the conversation's own free worker for its message (each wins
    # half the time: both poll every second) and takes it outright while its own worker sleeps,
    # and a sticky worker pins itself beside another pinned worker.
    hold: bool = True
    # A pinned worker snapshots its conversation each time it runs out of work (worker.loop's
    # snapshot_when_idle); False: only as it exits.
    snapshot_when_idle: bool = True
    now_ms: int = 0
    queues: dict[str, deque[SimMessage]] = field(default_factory=dict)
    workers: dict[str, SimWorker] = field(default_factory=dict)
    machines: dict[str, SimMachine] = field(default_factory=dict)
    ledger: dict[str, LaunchRecord] = field(default_factory=dict)
    pins: dict[str, str | None] = field(default_factory=dict)
    waits_ms: list[int] = field(default_factory=list)
    done: int = 0
    # Completes after which the worker found nothing to take (a complete whose claimNext came back
    # empty): the moment a store could tell the reconciler that a worker went idle.
    went_idle: int = 0
    # Workers that said they exited (status stopped, after their snapshot): the stores tell the
    # reconciler's watch of that too, so it parks or destroys the machine at once.
    exits: int = 0
    # Turns of conversations served before, and of those the ones whose worker lacked the
    # conversation's latest memory (see the module docstring).
    returning: int = 0
    forgot: int = 0
    # Workers that pinned themselves to a conversation another active worker was pinned to: each
    # snapshots its own memory of it, and the last one to exit overwrites the other's.
    pinned_beside: int = 0
    busy_destroyed: int = 0
    creates: int = 0  # create calls that made a machine
    refused: int = 0  # create calls refused (429 when not paced, or a platform failure)
    starts: int = 0
    billed_ms: float = 0.0
    first_reply_ms: dict[str, int] = field(default_factory=dict)
    _recent: dict[str, RecentConversation] = field(default_factory=dict)
    _events: list[tuple[int, int, str, tuple[Any, ...]]] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _busy: dict[str, str] = field(default_factory=dict)  # conversation → worker in flight
    _ready: set[str] = field(default_factory=set)  # conversations with a message and none in flight
    _free: set[str] = field(default_factory=set)  # registered workers, not exited, not busy
    _snapshotting: set[str] = field(default_factory=set)  # idle workers still taking their snapshot
    _sticky: set[str] = field(default_factory=set)  # launches whose workers pin themselves at their first job
    _turns: dict[str, int] = field(default_factory=dict)  # conversation → turns started
    _memory_at: dict[str, str] = field(default_factory=dict)  # conversation → worker of its latest turn
    _saved: dict[str, int] = field(default_factory=dict)  # conversation → turns its newest snapshot holds
    _pinned_ids: set[str] = field(default_factory=set)  # workers pinned to a conversation, not exited
    _rng: random.Random = field(init=False)
    _bucket: _Bucket = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._bucket = _Bucket(self.profile.create_rate_per_s, self.profile.create_burst)

    # ------------------------------------------------------------------ observation

    def inflight(self) -> set[str]:
        return set(self._busy)

    def ready(self) -> list[str]:
        return list(self._ready)

    def demand(self) -> DemandSnapshot:
        ready = sorted(self.ready(), key=lambda c: (self.queues[c][0].arrived_ms, c))
        oldest = min((self.queues[c][0].arrived_ms for c in ready), default=None)
        horizon = self.now_ms - 2 * 3_600_000
        recent = [
            RecentConversation.model_construct(
                conversation_id=c,
                last_arrival_at=r.last_arrival_at,
                gaps_ms=r.gaps_ms,
                active=bool(self.queues.get(c)) or c in self._busy,
            )
            for c, r in self._recent.items()
            if r.last_arrival_at >= horizon
        ]
        return DemandSnapshot(
            now=self.now_ms,
            ready_conversations=len(ready),
            inflight_conversations=len(self._busy),
            retrying_conversations=0,
            scheduled_conversations=0,
            oldest_ready_age_ms=None if oldest is None else self.now_ms - oldest,
            workers=[
                self._view(w) for w in self.workers.values() if exit_visible(w.status, w.status_since_ms, self.now_ms)
            ],
            ready_conversation_ids=ready,
            recent=recent,
        )

    def _silent_ms(self, w: SimWorker) -> int:
        """How long since the store heard from the worker (it does while its machine runs)."""
        silent_since = w.crashed_ms if w.crashed_ms is not None else w.suspended_ms
        return 0 if silent_since is None else self.now_ms - silent_since

    def _view(self, w: SimWorker) -> WorkerView:
        busy = w.busy_conversation is not None
        age = self._silent_ms(w)
        return WorkerView(
            worker_id=w.worker_id,
            provider="sim",
            status=w.status,  # type: ignore[arg-type]  # one of the WorkerStatus literals by construction
            heartbeat_age_ms=age,
            busy=busy,
            busy_since=None,
            idle_since=None if busy else w.idle_since_ms,
            status_since=w.status_since_ms,
            launch_id=w.launch_id if w.reports_launch else None,
            machine_ref=MachineRef(machine_id=w.machine_id),
            conversation_id=w.pinned or w.busy_conversation,
            pinned=w.pinned is not None,
        )

    def fleet(self) -> list[Machine]:
        """The platform's list: machines created within the list lag are not in it yet."""
        lag_ms = int(self.profile.list_lag_s * 1000)
        return [
            Machine(
                machine_id=m.machine_id,
                provider="sim",
                state=_STATES[m.state],
                launch_id=m.launch_id,
                created_at_ms=m.created_ms,
                conversation_id=self.pins.get(m.launch_id),
            )
            for m in self.machines.values()
            if self.now_ms - m.created_ms >= lag_ms
        ]

    def open_launches(self) -> list[LaunchRecord]:
        return [r for r in self.ledger.values() if r.state in ("requested", "running", "parked")]

    def queued_messages(self) -> int:
        """Messages waiting in every conversation's queue, the in-flight ones not counted (a queue-length metric)."""
        return sum(len(q) for q in self.queues.values())

    def active_conversations(self) -> set[str]:
        """Conversations with a message queued or in flight (what upstream calls active)."""
        return {c for c, q in self.queues.items() if q} | set(self._busy)

    def parked(self) -> int:
        return sum(1 for r in self.ledger.values() if r.state == "parked")

    # ------------------------------------------------------------------ the planner's actions
    # The world's side of autoscaler.plan.PlanHandler: each call is paced as the platform paces it.

    def apply(self, planned: Sequence[actions.Action]) -> None:
        self._call()  # the list call the tick made
        for action in planned:
            actions.dispatch(action, self)
        self._settle()

    def on_launch(self, action: actions.Launch) -> None:
        self.launch(
            pinned=action.conversation_id, parked=action.parked and self.profile.can_prefill, sticky=action.sticky
        )

    def on_start(self, action: actions.Start) -> None:
        self._set_launch(action.launch_id, "running")
        at = self._call()
        if action.conversation_id is not None:
            # Told its conversation first: one more call, the update, taken to answer as slowly as
            # a start; the boot then prepares and restores as a pinned launch's does.
            self.pins[action.launch_id] = action.conversation_id
            at = max(at, self._call()) + self.profile.draw(self._rng, self.profile.start_s)
        if at <= self.now_ms:
            self._on_start(action.machine_id)  # the API call returns with the machine starting
        else:
            self._schedule(at, "start", action.machine_id)

    def on_suspend(self, action: actions.Suspend) -> None:
        self._call()
        machine = self.machines.get(action.machine_id)
        w = self.workers.get(action.worker_id)
        if not self.profile.can_suspend or machine is None or machine.state != "running" or w is None:
            return
        if w.busy_conversation is not None or w.exited:
            return  # took work (or exited) since the plan was made: Fly would freeze it busy; we do not
        machine.state, machine.generation = "suspended", machine.generation + 1
        w.suspended_ms = self.now_ms
        self._free.discard(w.worker_id)

    def on_resume(self, action: actions.Resume) -> None:
        if action.launch_id is not None:
            self._set_launch(action.launch_id, "running")
        at = self._call()
        if at <= self.now_ms:
            self._on_resume(action.machine_id)
        else:
            self._schedule(at, "resume", action.machine_id)

    def on_park(self, action: actions.Park) -> None:
        self.pins[action.launch_id] = None  # back to the pool's environment (pin_pool_starts)
        if action.worker_id is not None and action.worker_id in self.workers:
            self._stop(self.workers[action.worker_id])
        self._set_launch(action.launch_id, "parked")

    def on_drain(self, action: actions.Drain) -> None:
        w = self.workers[action.worker_id]
        w.status, w.status_since_ms = "draining", self.now_ms

    def on_destroy(self, action: actions.Destroy) -> None:
        self.destroy(action.machine_id)
        if action.worker_id is not None and action.worker_id in self.workers:
            self._stop(self.workers[action.worker_id])
        if action.launch_id is not None:
            self._set_launch(action.launch_id, "gone")

    def on_collect_orphan(self, action: actions.CollectOrphan) -> None:
        self.destroy(action.machine_id)

    def on_retire_worker(self, action: actions.RetireWorker) -> None:
        self._stop(self.workers[action.worker_id])
        if action.launch_id is not None:
            self._set_launch(action.launch_id, "gone")

    def on_resolve_launch(self, action: actions.ResolveLaunch) -> None:
        self._set_launch(action.launch_id, "failed")

    def on_close_launch(self, action: actions.CloseLaunch) -> None:
        self._set_launch(action.launch_id, "gone")

    # ------------------------------------------------------------------ acting directly (other policies, tests)

    def launch(self, pinned: str | None = None, *, parked: bool = False, sticky: bool = False) -> str | None:
        """Ask for a machine; its launch id, or None when the platform refused at once (unpaced 429).
        ``sticky``: its workers pin themselves to the first conversation they take."""
        n = next(self._ids)
        launch_id = f"L{n}"
        if self.paced:
            at = self._bucket.reserve(self.now_ms)
            if self._rng.random() < self.profile.rate_429_p:
                at += int(self.profile.retry_after_s * 1000)  # refused once, sent again after Retry-After
        elif self._bucket.try_take(self.now_ms):
            at = self.now_ms
        else:
            self.refused += 1
            return None
        self.ledger[launch_id] = LaunchRecord(
            launch_id=launch_id, provider="sim", requested_at=self.now_ms, conversation_id=pinned
        )
        self.pins[launch_id] = pinned
        if sticky:
            self._sticky.add(launch_id)
        if at <= self.now_ms:
            self._on_create(launch_id, parked)  # the API call returns with the machine
        else:
            self._schedule(at, "create", launch_id, parked)
        return launch_id

    def destroy(self, machine_id: str) -> None:
        machine = self.machines.pop(machine_id, None)
        if machine is None:
            return
        for w in self.workers.values():
            if w.machine_id != machine_id:
                continue
            if w.busy_conversation is not None and w.busy_message is not None:
                self.busy_destroyed += 1
                # The message goes back to the head of its queue (a lease would expire); its attempt is spent.
                self._requeue(w)
            w.exited = True
            self._free.discard(w.worker_id)
            self._stop(w)
        self._bill_minimum(machine)
        record = self.ledger.get(machine.launch_id)
        if record is not None and record.state in ("requested", "running", "parked"):
            self._set_launch(machine.launch_id, "gone")

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
        """
        victims = sorted(
            self.machines.values(),
            key=lambda m: (m.booted, -m.created_ms, m.machine_id),
        )[: max(0, count)]
        for m in victims:
            self.destroy(m.machine_id)
        return len(victims)

    def crash(self, machine_id: str) -> None:
        """The machine dies under its worker (a host failure): the worker's heartbeat stops."""
        machine = self.machines.pop(machine_id, None)
        if machine is None:
            return
        for w in self.workers.values():
            if w.machine_id == machine_id and not w.exited:
                w.exited, w.crashed_ms = True, self.now_ms
                self._free.discard(w.worker_id)
                if w.busy_conversation is not None and w.busy_message is not None:
                    self._requeue(w)
        self._bill_minimum(machine)

    # ------------------------------------------------------------------ time

    def arrive(self, message: SimMessage) -> None:
        self.queues.setdefault(message.conversation, deque()).append(message)
        if message.conversation not in self._busy:
            self._ready.add(message.conversation)
        before = self._recent.get(message.conversation)
        gaps: list[int] = []
        if before is not None:
            gaps = [message.arrived_ms - before.last_arrival_at, *before.gaps_ms][:RECENT_GAPS]
        self._recent[message.conversation] = RecentConversation(
            conversation_id=message.conversation, last_arrival_at=message.arrived_ms, gaps_ms=gaps
        )
        self._settle()

    def next_change_ms(self) -> int | None:
        """The soonest moment at which the world changes by itself (``now_ms`` at the earliest), or None."""
        return max(self._events[0][0], self.now_ms) if self._events else None

    def advance(self, to_ms: int) -> None:
        """Run every event up to ``to_ms`` and move the clock there."""
        while self._events and self._events[0][0] <= to_ms:
            at, _, kind, args = heapq.heappop(self._events)
            self._bill(max(at, self.now_ms) - self.now_ms)
            self.now_ms = max(at, self.now_ms)
            done = self.done
            getattr(self, f"_on_{kind}")(*args)
            self._settle()
            if self.done > done and (args[0] in self._free or args[0] in self._snapshotting):
                self.went_idle += 1
        self._bill(max(to_ms, self.now_ms) - self.now_ms)
        self.now_ms = max(to_ms, self.now_ms)

    def step(self, dt_ms: int) -> None:
        self.advance(self.now_ms + dt_ms)

    # ------------------------------------------------------------------ internals

    def _schedule(self, at: int, kind: str, *args: Any) -> None:
        heapq.heappush(self._events, (max(at, self.now_ms), next(self._seq), kind, args))

    def _call(self) -> int:
        """One API call besides a create: when it takes effect."""
        if not self.profile.calls_share_bucket:
            return self.now_ms
        return self._bucket.reserve(self.now_ms)

    def _set_launch(self, launch_id: str, state: str) -> None:
        record = self.ledger.get(launch_id)
        if record is not None:
            self.ledger[launch_id] = record.model_copy(update={"state": state, "updated_at": self.now_ms})

    def _bill(self, dt_ms: int) -> None:
        if dt_ms <= 0:
            return
        for m in self.machines.values():
            if m.state in ("stopped", "suspended"):
                m.parked_ms += dt_ms
                self.billed_ms += dt_ms * self.profile.parked_cost
            else:
                m.running_ms += dt_ms
                self.billed_ms += dt_ms

    def _bill_minimum(self, machine: SimMachine) -> None:
        billed = machine.running_ms + machine.parked_ms * self.profile.parked_cost
        self.billed_ms += max(0.0, self.profile.min_billed_s * 1000 - billed)

    def _on_create(self, launch_id: str, parked: bool) -> None:
        record = self.ledger.get(launch_id)
        if record is None or record.state != "requested":
            return
        if self._rng.random() < self.profile.create_fail_p:
            self.refused += 1
            self._set_launch(launch_id, "failed")
            return
        self.creates += 1
        machine_id = f"m{launch_id[1:]}"
        machine = SimMachine(machine_id, launch_id, self.now_ms, state="stopped" if parked else "starting")
        self.machines[machine_id] = machine
        self.ledger[launch_id] = record.model_copy(
            update={"state": "parked" if parked else "running", "machine_id": machine_id, "updated_at": self.now_ms}
        )
        if not parked:
            self._boot(machine, self.profile.create_s)

    def _on_start(self, machine_id: str) -> None:
        machine = self.machines.get(machine_id)
        if machine is None or machine.state != "stopped":
            return
        self.starts += 1
        machine.state, machine.booted = "starting", False
        self._boot(machine, self.profile.start_s)

    def _on_resume(self, machine_id: str) -> None:
        machine = self.machines.get(machine_id)
        if machine is None or machine.state != "suspended":
            return
        self.starts += 1
        machine.state, machine.generation = "starting", machine.generation + 1
        delay = self.profile.draw(self._rng, self.profile.start_s)
        if self._rng.random() < self.profile.resume_fail_p:
            # Booted afresh: the entrypoint prepares (restores) again, and the gateway starts again.
            delay += self._preparing(machine.launch_id) + self.profile.draw(self._rng, self.profile.ready_s)
            self._forget(machine_id)
        self._schedule(self.now_ms + delay, "resumed", machine_id, machine.generation)

    def _forget(self, machine_id: str) -> None:
        """A machine booted afresh lost its agent state: its worker has what it restores at boot."""
        for w in self.workers.values():
            if w.machine_id != machine_id or w.exited:
                continue
            for conversation in [c for c, at in self._memory_at.items() if at == w.worker_id]:
                del self._memory_at[conversation]
            w.restored = None if w.pinned is None else self._saved.get(w.pinned)

    def _on_resumed(self, machine_id: str, generation: int) -> None:
        machine = self.machines.get(machine_id)
        if machine is None or machine.generation != generation or machine.state != "starting":
            return
        machine.state = "running"
        for w in self.workers.values():
            if w.machine_id == machine_id and w.suspended_ms is not None and not w.exited:
                w.suspended_ms = None
                self._idle(w)

    def _boot(self, machine: SimMachine, span: Range) -> None:
        machine.generation += 1
        running = self.now_ms + self.profile.draw(self._rng, span)
        self._schedule(running, "running", machine.machine_id, machine.generation)
        if self._rng.random() >= self.profile.boot_fail_p:
            ready = running + self._preparing(machine.launch_id) + self.profile.draw(self._rng, self.profile.ready_s)
            self._schedule(ready, "registered", machine.machine_id, machine.generation)

    def _preparing(self, launch_id: str) -> int:
        """What a boot spends before its gateway is ready besides the gateway's own start: nothing
        unpinned; pinned, the prepare step, and a slower gateway start when it restores a snapshot."""
        pin = self.pins.get(launch_id)
        if pin is None:
            return 0
        spent = self.profile.draw(self._rng, self.profile.prepare_s)
        if self._saved.get(pin) is not None:
            spent += self.profile.draw(self._rng, self.profile.restore_s)
        return spent

    def _on_running(self, machine_id: str, generation: int) -> None:
        machine = self.machines.get(machine_id)
        if machine is not None and machine.generation == generation and machine.state == "starting":
            machine.state = "running"

    def _on_registered(self, machine_id: str, generation: int) -> None:
        machine = self.machines.get(machine_id)
        if machine is None or machine.generation != generation or machine.state != "running":
            return
        machine.booted = True
        worker_id = f"w-{machine.launch_id}-{machine.generation}"
        self.workers[worker_id] = SimWorker(
            worker_id=worker_id,
            launch_id=machine.launch_id,
            machine_id=machine_id,
            registered_ms=self.now_ms,
            status_since_ms=self.now_ms,
            idle_since_ms=self.now_ms,
            pinned=(pin := self.pins.get(machine.launch_id)),
            restored=None if pin is None else self._saved.get(pin),
        )
        if pin is not None:
            self._pinned_ids.add(worker_id)
        self._idle(self.workers[worker_id])

    def _on_done(self, worker_id: str, until: int) -> None:
        w = self.workers.get(worker_id)
        if w is None or w.busy_until_ms != until or w.busy_conversation is None:
            return
        conversation = w.busy_conversation
        self._busy.pop(conversation, None)
        snapshot = 0
        if self.queues[conversation]:
            self._ready.add(conversation)
        elif self.snapshot_when_idle and w.pinned == conversation:
            self._saved[conversation] = self._turns[conversation]  # out of work: its snapshot
            snapshot = self.profile.draw(self._rng, self.profile.snapshot_s)
        w.busy_conversation = w.busy_until_ms = w.busy_message = None
        self.done += 1
        if snapshot:
            # Idle in the store from the complete on, but taking nothing until the snapshot is up.
            w.idle_since_ms = self.now_ms
            self._snapshotting.add(w.worker_id)
            self._schedule(self.now_ms + snapshot, "snapshotted", w.worker_id, self.now_ms)
        else:
            self._idle(w)

    def _on_snapshotted(self, worker_id: str, since: int) -> None:
        self._snapshotting.discard(worker_id)
        w = self.workers.get(worker_id)
        if w is None or w.exited or w.suspended_ms is not None or w.idle_since_ms != since:
            return
        self._idle(w, since=since)

    def _on_idle_exit(self, worker_id: str, since: int) -> None:
        w = self.workers.get(worker_id)
        if w is None or w.exited or w.busy_conversation is not None or w.suspended_ms is not None:
            return
        if w.idle_since_ms == since:
            self._exit(w)

    def _stop(self, w: SimWorker) -> None:
        """The worker's status becomes stopped, since now (the stores' set_status: forward only)."""
        if w.status != "stopped":
            w.status, w.status_since_ms = "stopped", self.now_ms

    def _on_exit_recorded(self, worker_id: str) -> None:
        w = self.workers[worker_id]
        if w.status != "stopped":  # not destroyed or retired meanwhile
            self._stop(w)
            self.exits += 1

    def _on_stopped(self, machine_id: str, generation: int) -> None:
        machine = self.machines.get(machine_id)
        if machine is None or machine.generation != generation or machine.state != "stopping":
            return
        if self.auto_destroy:
            self.destroy(machine_id)
        else:
            machine.state = "stopped"

    def _requeue(self, w: SimWorker) -> None:
        """The job of a worker whose machine went away goes back to the head of its queue (a lease
        would expire); its attempt is spent."""
        conversation, message = w.busy_conversation, w.busy_message
        assert conversation is not None and message is not None
        self.queues[conversation].appendleft(message)
        self._busy.pop(conversation, None)
        self._ready.add(conversation)
        w.busy_conversation = w.busy_until_ms = w.busy_message = None

    def _idle(self, w: SimWorker, since: int | None = None) -> None:
        """The worker is free to take work; idle since ``since`` (its complete, when a snapshot came
        between), which is also when an idle-exiting worker's timer started."""
        w.idle_since_ms = self.now_ms if since is None else since
        if not w.exited:
            self._free.add(w.worker_id)
        if self.idle_exit_s is not None:
            exit_at = w.idle_since_ms + math.ceil(self.idle_exit_s * 1000)
            self._schedule(exit_at, "idle_exit", w.worker_id, w.idle_since_ms)

    def _exit(self, w: SimWorker) -> None:
        w.exited = True
        self._free.discard(w.worker_id)
        self._pinned_ids.discard(w.worker_id)
        snapshot = 0
        if w.pinned is not None and self._memory_at.get(w.pinned) == w.worker_id:
            if self._saved.get(w.pinned) != self._turns[w.pinned]:  # only what is still unsaved
                snapshot = self.profile.draw(self._rng, self.profile.snapshot_s)
            self._saved[w.pinned] = self._turns[w.pinned]  # a pinned worker's snapshot at exit
        # It says so once its snapshot is uploaded (factory worker run's record_exit).
        self._schedule(self.now_ms + snapshot, "exit_recorded", w.worker_id)
        machine = self.machines.get(w.machine_id)
        if machine is not None and machine.state in ("running", "starting"):
            machine.state = "stopping"
            machine.generation += 1
            self._schedule(
                self.now_ms + snapshot + self.profile.draw(self._rng, self.profile.stop_s),
                "stopped",
                machine.machine_id,
                machine.generation,
            )

    def _settle(self) -> None:
        """Idle workers take ready work (their last conversation first); drained idle workers exit."""
        free = self._still_free()
        if not free or not self._ready:
            return
        ready = sorted(self._ready, key=lambda c: (self.queues[c][0].arrived_ms, c))
        by_last = {w.last_conversation: w for w in free if w.last_conversation is not None}
        by_pin = {w.pinned: w for w in free if w.pinned is not None}
        unpinned = deque(w for w in free if w.pinned is None)
        taken: set[str] = set()
        held: set[str] | None = None
        for conversation in ready:
            worker = by_last.get(conversation) or by_pin.get(conversation)
            if worker is not None and (worker.worker_id in taken or worker.pinned not in (None, conversation)):
                worker = None
            if not self.hold:
                if worker is not None and unpinned and self._rng.random() < 0.5:
                    worker = None  # the race: an unpinned worker asked first
            elif worker is None and unpinned:
                held = self._held() if held is None else held
                if conversation in held:
                    continue  # its pinned worker, not free now, takes it (the store's hold)
            while worker is None and unpinned:
                candidate = unpinned.popleft()
                if candidate.worker_id not in taken:
                    worker = candidate
            if worker is None:
                continue
            taken.add(worker.worker_id)
            self._take(worker, conversation)
            if len(taken) == len(free):
                return

    def _still_free(self) -> list[SimWorker]:
        """The free workers, once the drained ones among them have exited."""
        free = [self.workers[worker_id] for worker_id in sorted(self._free)]
        for w in free:
            if w.status != "active" or w.machine_id not in self.machines:
                self._exit(w)
        return [w for w in free if not w.exited]

    def _take(self, w: SimWorker, conversation: str) -> None:
        message = self.queues[conversation].popleft()
        switch = 0 if w.last_conversation == conversation else self.profile.draw(self._rng, self.profile.switch_s)
        start = self.now_ms + switch
        self.waits_ms.append(start - message.arrived_ms)
        self.first_reply_ms.setdefault(conversation, start + message.duration_ms)
        w.busy_conversation, w.busy_message = conversation, message
        w.busy_until_ms = start + message.duration_ms
        w.last_conversation = conversation
        if w.pinned is None and (self.pinned or self._sticks(w, conversation)):
            self.pinned_beside += self._pinned_to(conversation, w)
            w.pinned = conversation
            self._pinned_ids.add(w.worker_id)
        self._remember(w, conversation)
        self._busy[conversation] = w.worker_id
        self._ready.discard(conversation)
        self._free.discard(w.worker_id)
        self._schedule(w.busy_until_ms, "done", w.worker_id, w.busy_until_ms)

    def _sticks(self, w: SimWorker, conversation: str) -> bool:
        """A sticky launch's worker pins itself to its job's conversation, unless that conversation's
        memory is in a snapshot already or with a worker pinned to it (worker.loop's rule)."""
        if w.launch_id not in self._sticky or conversation in self._saved:
            return False
        return not self.hold or not self._pinned_to(conversation, w)

    def _pinned_to(self, conversation: str, other_than: SimWorker) -> bool:
        """Whether an active worker other than ``other_than`` is pinned to the conversation."""
        others = (self.workers[i] for i in self._pinned_ids if i != other_than.worker_id)
        return any(o.pinned == conversation and o.status == "active" for o in others)

    def _held(self) -> set[str]:
        """Conversations whose pinned worker keeps unpinned workers off them (contracts.rules.holds)."""
        held: set[str] = set()
        for worker_id in self._pinned_ids:
            w = self.workers[worker_id]
            if w.pinned is not None and holds(w.status, self.now_ms - self._silent_ms(w), self.now_ms):
                held.add(w.pinned)
        return held

    def memory_saved(self, conversation: str) -> bool:
        """Whether the conversation's newest snapshot holds its latest turn."""
        return self._saved.get(conversation, 0) == self._turns.get(conversation, 0)

    def _remember(self, w: SimWorker, conversation: str) -> None:
        turns = self._turns.get(conversation, 0)
        if turns:
            self.returning += 1
            ran_last = self._memory_at.get(conversation) == w.worker_id
            if not ran_last and not (w.pinned == conversation and w.restored == turns):
                self.forgot += 1
        self._turns[conversation] = turns + 1
        self._memory_at[conversation] = w.worker_id


_STATES: dict[str, MachineState] = {
    "starting": "starting",
    "running": "running",
    "stopping": "stopping",
    "stopped": "stopped",
    "suspended": "suspended",
}
