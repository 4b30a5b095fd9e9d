"""The planner: a pure function from what we observe to what one tick should do.

``plan(demand, fleet, ledger, policy, now)`` reads the store's demand snapshot, the provider's
machines and the launch ledger; it does no I/O, reads no clock and draws no random numbers, so
it can be tested exhaustively. The reconciler carries the plan out.

Rules, in the order applied:

1. Workers that are gone (stale heartbeat, or their machine stopped) lose their machine and are
   retired; draining workers are done with once they have exited, or once they overstay the drain
   deadline while idle. A worker that said it exited (the snapshot keeps it, stopped, for a while)
   has its machine destroyed at once, powered off or not, unless the pool will keep it: then it is
   parked once it is listed stopped. A busy worker (one holding a live lease) is never destroyed.
   A worker with no machine is retired together with its launch. A stopped machine whose worker
   is done is parked in the warm pool while the pool has room (``policy.pool_size``; with
   ``pool_hold_s`` no more than the conversations that had a message within it, at least
   ``pool_min``), else destroyed. A suspended unpinned worker past ``suspend_keep_s`` takes a
   pool place before a parked machine does (same bill, its gateway running); parked machines
   beyond the pool go. A suspended pinned worker past it is resumed and drained, so it snapshots
   its conversation as it exits (a frozen machine destroyed would take every turn since its boot
   with it).
2. Launches in the ledger count as capacity until their worker registers (a worker is matched to
   its machine by launch id, worker id or machine id); one that never shows up is looked up by
   its tag, then given up; one whose machine died is cleaned up. Parked launches are the pool.
3. Machines that no worker and no launch account for are collected after a grace period.
4. Desired = ready + in-flight conversations (affinity) or that over ``conversations_per_worker``
   (pool), plus the idle workers kept warm for conversations expected back (autoscaler.keepwarm),
   clamped to [min, max]. Scale up at once: parked machines are started first (cheap and quick),
   new ones created for the rest, within the machine budget. Scale down only idle managed workers
   that have been idle for the stabilisation window, longest-idle first, by draining. The pool is
   then topped up with machines created stopped.
5. Affinity pins: each launch in affinity mode is for one ready conversation that no worker
   covers. A pinned worker covers its conversation while it lives, draining included (it may be
   uploading the snapshot the next machine restores), so nothing is launched for that conversation
   until it has exited. Unpinned workers (started by hand) take any conversation and are counted
   as such. A pinned idle worker whose conversation has work is never drained. Parked pool
   machines are still started first; only a new machine can be told its conversation, so those
   start unpinned (their worker seeds the session from the stored history) and the launches
   created beyond them are pinned.
6. A draining worker whose snapshot upload is in progress is not destroyed for a stale heartbeat
   (uploading does not poll); the drain deadline still applies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autoscaler.keepwarm import pinned_kept, warm_target
from autoscaler.plan import (
    Action,
    CloseLaunch,
    CollectOrphan,
    Destroy,
    Drain,
    Launch,
    Park,
    Plan,
    ResolveLaunch,
    Resume,
    RetireWorker,
    Start,
    Suspend,
)
from autoscaler.policy import ScalingPolicy
from autoscaler.provider import Machine
from contracts.models import OPEN_LAUNCH_STATES, DemandSnapshot, LaunchRecord, WorkerView

_ENDED = ("stopped", "failed")
# How far past a deadline a recheck is asked for, so the tick then finds it passed.
_PAST_S = 0.1
# A parked machine is stopped, or (Fly, created with skip_launch) was never started.
_PARKABLE = ("stopped", "starting")


class _Fleet:
    """Indexes over the observed machines so each worker and launch finds its machine."""

    def __init__(self, machines: Sequence[Machine]) -> None:
        self.machines = machines
        self._by_launch: dict[str, Machine] = {}
        self._by_worker: dict[str, Machine] = {}
        self._by_id: dict[str, Machine] = {}
        for m in machines:
            if m.launch_id is not None:
                self._by_launch.setdefault(m.launch_id, m)
            if m.worker_id is not None:
                self._by_worker.setdefault(m.worker_id, m)
            self._by_id.setdefault(m.machine_id, m)

    def for_worker(self, worker: WorkerView) -> Machine | None:
        """The worker's machine: by launch id, else by the worker id the machine was told, else by machine id."""
        found = self.for_launch(worker.launch_id) if worker.launch_id is not None else None
        if found is None:
            found = self._by_worker.get(worker.worker_id)
        if found is None and worker.machine_ref is not None:
            found = self._by_id.get(worker.machine_ref.machine_id)
        return found

    def for_launch(self, launch_id: str) -> Machine | None:
        return self._by_launch.get(launch_id)


@dataclass
class _Pool:
    """Parked machines: those found in the pool, and room for the ones this plan parks."""

    size: int
    members: list[tuple[LaunchRecord, Machine]] = field(default_factory=list)
    parked_now: int = 0
    # Unpinned suspended workers past ``suspend_keep_s`` held in the pool's place: a resume finds
    # the gateway running, a parked machine must start it, and both bill as stopped.
    sleepers: int = 0

    def has_room(self) -> bool:
        return len(self.members) + self.parked_now + self.sleepers < self.size

    def take(self) -> bool:
        if not self.has_room():
            return False
        self.parked_now += 1
        return True

    def hold_sleeper(self) -> bool:
        if self.sleepers >= self.size:
            return False
        self.sleepers += 1
        return True

    def surplus(self, started: int) -> list[tuple[LaunchRecord, Machine]]:
        """Parked members beyond the pool's size, once the sleepers held in their place count."""
        return self.members[started + max(0, self.size - self.sleepers - self.parked_now) :]


def plan(
    demand: DemandSnapshot,
    fleet: Sequence[Machine],
    ledger: Sequence[LaunchRecord],
    policy: ScalingPolicy,
    now: int,
) -> Plan:
    machines = _Fleet(fleet)
    actions: list[Action] = []
    accounted: set[str] = set()  # machine ids some worker or launch explains
    open_ledger = [r for r in ledger if r.state in OPEN_LAUNCH_STATES]
    pool = _Pool(_pool_target(demand, policy, now), _pool_members(open_ledger, machines, demand.workers))
    accounted |= {m.machine_id for _, m in pool.members}

    known = {r.launch_id: r for r in open_ledger}
    workers = _still_theirs(demand.workers, machines, known, pool)
    live, suspended = _settle_workers(workers, machines, known, policy, now, actions, accounted, pool)
    open_launches = _settle_launches(
        open_ledger, _registered(workers, machines), machines, pool, policy, now, actions, accounted
    )
    pending = len(open_launches)
    _collect_orphans(fleet, accounted, set(known), policy, now, actions)

    active = demand.ready_conversations + demand.inflight_conversations
    warm = warm_target(
        demand.recent,
        policy,
        now,
        cold_start_s=policy.warm_start_s if pool.members else policy.cold_start_s,
        active=active,
    )
    spares = _headroom(demand, policy, now)
    desired = policy.desired(active + max(warm.workers, spares))
    capacity = len(live) + pending
    why = (
        f"{demand.ready_conversations} ready + {demand.inflight_conversations} in-flight conversations "
        f"→ {desired} worker(s) ({policy.mode}); {len(live)} live, {pending} launching"
        + (f", {len(pool.members)} parked" if pool.members else "")
        + (f", {len(suspended)} suspended" if suspended else "")
        + (f"; {warm.why}" if warm.workers else "")
    )
    room = _budget_room(fleet, open_ledger, machines, actions, policy)
    # A suspended pinned worker covers its conversation: it is resumed when that has work.
    ready = set(demand.ready_conversation_ids)
    actions += [
        _resume(w, machines, f"its conversation has work; {why}")
        for w in suspended
        if w.pinned and w.conversation_id in ready
    ]
    sleepers = [w for w in suspended if not w.pinned]
    started = launched = 0
    targets: list[str] = []
    short = 0
    if policy.mode == "affinity":
        # Coverage, not counts: a pinned worker serves only its conversation. Ready conversations
        # beyond the listed ids get unpinned launches.
        targets, free = _uncovered(demand, live, open_launches, machines, actions)
        overflow = max(0, demand.ready_conversations - len(demand.ready_conversation_ids) - free)
        # Headroom: idle unpinned workers held for conversations that arrive with no worker.
        headroom = max(0, spares - free)
        need = max(len(targets) + overflow + headroom, policy.min_workers - capacity)
        short = _short(len(targets) + overflow, len(sleepers) + len(pool.members) + room, workers, machines, actions)
    else:
        need = desired - capacity
    # Never past max_workers: a pinned launch beyond it waits for an idle pinned worker to drain.
    need = min(need, max(0, policy.max_workers - capacity))
    if need > 0:
        if policy.max_step is not None:
            need = min(need, policy.max_step)
        # Suspended unpinned workers first (their gateway is running), then parked pool machines
        # (started, far sooner than created). Only a new machine can be told its conversation, so
        # these take any (seeding the session from history); the launches created for the rest
        # are pinned to the conversations still uncovered.
        resumed = sleepers[:need]
        actions += [_resume(w, machines, f"resumed; {why}") for w in resumed]
        need -= len(resumed)
        # Told the conversations still uncovered, in claim order, when the platform can do that
        # (those beyond the sleepers': a resumed sleeper takes any).
        told = targets[len(resumed) :] if policy.pin_pool_starts and policy.mode == "affinity" and not short else []
        for record, machine in pool.members[:need]:
            pin = told[started] if started < len(told) else None
            actions.append(
                Start(
                    machine_id=machine.machine_id,
                    launch_id=record.launch_id,
                    conversation_id=pin,
                    reason=f"from the pool{f', for {pin}' if pin else ''}; {why}",
                )
            )
            started += 1
        launches = max(0, min(need - started, room))
        if launches < need - started:
            why += f"; budget {policy.budget_machines} machine(s)"
        # More conversations than the budget has machines for: a machine each would leave the
        # rest waiting for one to exit, so the launches are unpinned and serve them in turn.
        pins = [] if short else targets[len(resumed) + started :]
        if short:
            why += f"; {short} conversation(s) beyond the budget share unpinned workers"
        slots: list[str | None] = [*pins[:launches], *[None] * max(0, launches - len(pins))]
        # Workers serving the conversations beyond the budget in turn must not stick to one.
        sticky = policy.sticky_launches and not short
        actions += [Launch(reason=why, conversation_id=pin, sticky=sticky) for pin in slots]
        room -= launches
        launched = launches
    # A pool bigger than recent demand bills for machines nothing will start: the surplus goes.
    surplus = pool.surplus(started)
    actions += [
        Destroy(
            machine_id=machine.machine_id,
            launch_id=record.launch_id,
            reason=f"warm pool {pool.size}: {len(surplus)} parked beyond recent demand",
        )
        for record, machine in surplus
    ]
    if capacity > desired or short:
        # A pinned idle worker is kept while its conversation is expected back, or has work waiting.
        kept = {*demand.ready_conversation_ids, *pinned_kept(demand.recent, policy, now)}
        actions += _drains(live, machines, capacity - desired, short, spares, policy, now, why, kept)
    if short:
        # Suspended pinned workers whose conversation is quiet give their machines back too.
        quiet = [w for w in suspended if w.pinned and w.conversation_id not in ready]
        actions += [_destroy_suspended(w, machines, f"the budget needs its machine; {why}") for w in quiet[:short]]
    if policy.pool_prefill:
        # Live workers count: their machines are parked when they are done, so a pool in use is
        # not refilled only to destroy what comes back to it.
        settled = {a.machine_id for a in actions if isinstance(a, Destroy | CollectOrphan | Park)}
        draining = sum(1 for w in workers if w.status != "active" and _on_live_machine(w, machines, settled))
        returning = len(live) + len(suspended) + draining + pending + launched
        missing = pool.size - (len(pool.members) + pool.parked_now + returning)
        actions += [
            Launch(parked=True, sticky=policy.sticky_launches, reason=f"warm pool {pool.size}")
            for _ in range(max(0, min(missing, room)))
        ]
    return Plan(
        actions=tuple(actions),
        desired=desired,
        current=len(live),
        launching=pending,
        parked=len(pool.members) - started - len(surplus) + pool.parked_now,
        summary=why,
        recheck_in_s=_soonest(_window_ends_in_s(live, machines, policy, now), _hedge_in_s(open_launches, policy, now)),
    )


def _soonest(*delays: float | None) -> float | None:
    return min((d for d in delays if d is not None), default=None)


def _window_ends_in_s(live: Sequence[WorkerView], machines: _Fleet, policy: ScalingPolicy, now: int) -> float | None:
    """Seconds until the first idle worker still inside its scale-down window leaves it."""
    window_ms = policy.scale_down_window_s * 1000
    left = [
        (w.idle_since + window_ms - now) / 1000
        for w in live
        if not w.busy and w.idle_since is not None and machines.for_worker(w) is not None
    ]
    return min((s for s in left if s > 0), default=None)


def _hedge_in_s(pending: Sequence[LaunchRecord], policy: ScalingPolicy, now: int) -> float | None:
    """Seconds until the first launch on its way passes ``launch_hedge_s`` without a worker, when
    another is launched beside it: a boot that failed silently is replaced then, not up to a whole
    interval later (a waiting conversation pays every second of it). Just past the hedge, since a
    launch exactly at it still counts as capacity."""
    left = [((r.updated_at or r.requested_at) - now) / 1000 + policy.launch_hedge_s + _PAST_S for r in pending]
    return min((s for s in left if s > 0), default=None)


def _short(wanted: int, fits: int, workers: Sequence[WorkerView], machines: _Fleet, planned: Sequence[Action]) -> int:
    """Conversations that the budget leaves without a machine of their own, beyond the machines
    that draining workers are about to give back."""
    settled = {a.machine_id for a in planned if isinstance(a, Destroy | CollectOrphan | Park)}
    leaving = sum(1 for w in workers if w.status == "draining" and _on_live_machine(w, machines, settled))
    return max(0, wanted - fits - leaving)


def _headroom(demand: DemandSnapshot, policy: ScalingPolicy, now: int) -> int:
    """Spare workers to hold: ``spare_workers`` while at least ``spare_min_arrivals`` messages
    arrived within ``spare_hold_s``. Sparser traffic would pay for a spare through every gap and
    still find it gone after the longer ones."""
    if not policy.spare_workers:
        return 0
    arrivals, _ = _arrivals_since(demand, now - policy.spare_hold_s * 1000)
    return policy.spare_workers if arrivals >= policy.spare_min_arrivals else 0


def _pool_target(demand: DemandSnapshot, policy: ScalingPolicy, now: int) -> int:
    """Parked machines to keep: ``pool_size``, or with ``pool_hold_s`` no more than the
    conversations that had a message within it (each could need a worker of its own at once), and
    never fewer than ``pool_min``: over hours, parked machines bill more than the seconds they save."""
    if policy.pool_hold_s is None:
        return policy.pool_size
    _, conversations = _arrivals_since(demand, now - policy.pool_hold_s * 1000)
    return min(policy.pool_size, max(policy.pool_min, conversations))


def _arrivals_since(demand: DemandSnapshot, since: float) -> tuple[int, int]:
    """Messages that arrived at or after ``since``, and the conversations they came in."""
    arrivals = conversations = 0
    for conversation in demand.recent:
        at = conversation.last_arrival_at
        conversations += at >= since
        for gap in (0, *conversation.gaps_ms):
            at -= gap
            if at < since:
                break
            arrivals += 1
    return arrivals, conversations


def _resume(worker: WorkerView, machines: _Fleet, why: str) -> Resume:
    machine = machines.for_worker(worker)
    assert machine is not None  # a suspended worker was found by its machine
    return _resume_on(worker, machine, why)


def _resume_on(worker: WorkerView, machine: Machine, why: str) -> Resume:
    launch_id = machine.launch_id or worker.launch_id
    return Resume(machine_id=machine.machine_id, worker_id=worker.worker_id, launch_id=launch_id, reason=why)


def _destroy_suspended(worker: WorkerView, machines: _Fleet, why: str) -> Destroy:
    machine = machines.for_worker(worker)
    assert machine is not None  # a suspended worker was found by its machine
    launch_id = machine.launch_id or worker.launch_id
    reason = f"worker {worker.worker_id} (suspended): {why}"
    return Destroy(machine_id=machine.machine_id, worker_id=worker.worker_id, launch_id=launch_id, reason=reason)


def _on_live_machine(worker: WorkerView, machines: _Fleet, settled: set[str]) -> bool:
    """The worker's machine runs and this plan does not remove or park it."""
    machine = machines.for_worker(worker)
    return machine is not None and machine.state not in _ENDED and machine.machine_id not in settled


def _pool_members(
    ledger: Sequence[LaunchRecord], machines: _Fleet, workers: Sequence[WorkerView]
) -> list[tuple[LaunchRecord, Machine]]:
    """Parked launches whose machine is listed and still parked, oldest first."""
    booted = {w.launch_id for w in workers if w.status != "stopped" and w.launch_id is not None}
    members = []
    for record in ledger:
        if record.state != "parked" or record.launch_id in booted:
            continue
        machine = machines.for_launch(record.launch_id)
        if machine is not None and machine.state in _PARKABLE:
            members.append((record, machine))
    return members


def _registered(workers: Sequence[WorkerView], machines: _Fleet) -> set[str]:
    """Launch ids that a registered worker stands for: the one it reports, or its machine's."""
    launches = {w.launch_id for w in workers if w.launch_id is not None}
    for w in workers:
        machine = machines.for_worker(w)
        if machine is not None and machine.launch_id is not None:
            launches.add(machine.launch_id)
    return launches


def _uncovered(
    demand: DemandSnapshot,
    live: Sequence[WorkerView],
    open_launches: Sequence[LaunchRecord],
    machines: _Fleet,
    planned: Sequence[Action],
) -> tuple[list[str], int]:
    """Ready conversations (claim order) that no pinned worker or launch covers, beyond what the
    idle unpinned workers and unpinned launches can take; and how many of those are left over."""
    going = {a.worker_id for a in planned if isinstance(a, Destroy | RetireWorker) and a.worker_id}
    told = [_told(r, machines) for r in open_launches]
    covered = {c for c in told if c is not None}
    for w in demand.workers:
        if not w.pinned or w.conversation_id is None or w.worker_id in going or w.status == "stopped":
            continue
        machine = machines.for_worker(w)
        if machine is None or machine.state not in _ENDED:
            covered.add(w.conversation_id)
    free = sum(1 for w in live if not w.pinned and not w.busy)
    free += sum(1 for c in told if c is None)
    uncovered = [c for c in demand.ready_conversation_ids if c not in covered]
    return uncovered[free:], max(0, free - len(uncovered))


def _told(record: LaunchRecord, machines: _Fleet) -> str | None:
    """The conversation a launch on its way is for: its own, or the one its pool machine was told
    as it was started (``pin_pool_starts``; the ledger keeps the pool's launch unpinned)."""
    if record.conversation_id is not None:
        return record.conversation_id
    machine = machines.for_launch(record.launch_id)
    return None if machine is None else machine.conversation_id


def _settle_workers(
    workers: Sequence[WorkerView],
    machines: _Fleet,
    known: dict[str, LaunchRecord],
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    accounted: set[str],
    pool: _Pool,
) -> tuple[list[WorkerView], list[WorkerView]]:
    """Handle gone and draining workers; return the live, active ones (the capacity) and the
    suspended ones (resumed when there is work for them)."""
    live: list[WorkerView] = []
    suspended: list[WorkerView] = []
    parked = {m.machine_id for _, m in pool.members}
    current = _current_workers(workers, machines, policy)
    for w in workers:
        machine = _own_machine(w, machines, parked, accounted)
        if w.status == "stopped":
            _settle_exited(w, machine, known, policy, now, actions, pool)
            continue
        if machine is not None and _settled_apart(w, machine, current, known, policy, now, actions, pool, suspended):
            continue
        stale = _stale(w, machine, known, policy, now)
        if w.status == "active" and not stale:
            if machine is not None and machine.state in _ENDED:
                _end(w, machine, "its machine stopped under it", known, actions, pool)
            else:
                live.append(w)
            continue
        if w.busy:
            continue  # a live lease: the job is still running somewhere; never cut it short
        launch = known.get(w.launch_id) if w.launch_id is not None else None
        gone = machine is None and launch is not None and launch.machine_id is not None
        overstayed = (
            w.status != "active"
            and w.status_since is not None
            and now - w.status_since > policy.drain_deadline_s * 1000
        )
        if (
            stale
            and w.snapshot_pending
            and not overstayed
            and not gone
            and (machine is None or machine.state not in _ENDED)
        ):
            continue  # uploading its snapshot, which does not poll: the next machine needs it
        if stale:
            _end(w, machine, f"no heartbeat for {w.heartbeat_age_ms // 1000} s", known, actions, pool)
        elif machine is not None and machine.state in _ENDED:
            _end(w, machine, f"drained worker exited ({w.status})", known, actions, pool)
        elif gone:
            _end(w, None, f"{w.status} worker's machine is gone", known, actions, pool)
        elif overstayed:
            _end(
                w,
                machine,
                f"still {w.status} after the {policy.drain_deadline_s:g} s drain deadline",
                known,
                actions,
                pool,
            )
    return live, suspended


def _own_machine(worker: WorkerView, machines: _Fleet, parked: set[str], accounted: set[str]) -> Machine | None:
    """The worker's machine, now accounted for; None if it has none, or if the pool owns it now
    (the worker was an earlier one of a parked machine)."""
    machine = machines.for_worker(worker)
    if machine is None or machine.machine_id in parked:
        return None
    accounted.add(machine.machine_id)
    return machine


def _still_theirs(
    workers: Sequence[WorkerView], machines: _Fleet, known: dict[str, LaunchRecord], pool: _Pool
) -> list[WorkerView]:
    """The snapshot's workers, with those that said they exited only while their machine is still
    theirs: listed, not in the pool, and not started again since (a pool machine's launch is
    touched when it starts, and its next worker is another). Any other exit is history: its
    machine and launch are settled as they would be without it."""
    parked = {m.machine_id for _, m in pool.members}
    others = {m.machine_id for w in workers if w.status != "stopped" and (m := machines.for_worker(w)) is not None}
    # A machine that booted twice (a failed resume, a restart) can have two exits on the books:
    # the newest speaks for it, so it gets one action.
    newest: dict[str, tuple[int, str]] = {}
    for w in workers:
        machine = machines.for_worker(w)
        if w.status != "stopped" or w.status_since is None or machine is None:
            continue
        if machine.machine_id in parked | others:
            continue
        record = known.get(machine.launch_id or "") or known.get(w.launch_id or "")
        if record is not None and record.updated_at is not None and record.updated_at >= w.status_since:
            continue  # started again since (the same millisecond too: never destroy a machine just started)
        newest[machine.machine_id] = max(newest.get(machine.machine_id, (0, "")), (w.status_since, w.worker_id))
    theirs = {worker_id for _, worker_id in newest.values()}
    return [w for w in workers if w.status != "stopped" or w.worker_id in theirs]


def _settle_exited(
    worker: WorkerView,
    machine: Machine | None,
    known: dict[str, LaunchRecord],
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    pool: _Pool,
) -> None:
    """A worker that said it exited has finished its drain (its snapshot uploaded): its machine
    is parked once it has stopped, if the pool will keep it, else destroyed now. A droplet bills
    until it is destroyed, powered off or not, and waiting for the list to show it stopped cost
    the 5-15 s of its power-off and the rest of the interval, every time. A machine the pool would
    keep that has not stopped within the start grace is stuck: destroyed too."""
    if machine is None or worker.busy or worker.snapshot_pending:
        return  # a lease or an upload still names it: left to expire or finish
    record = known.get(machine.launch_id or worker.launch_id or "")
    kept = record is not None and record.conversation_id is None and pool.has_room()
    exited_ms = now - (worker.status_since or 0)
    stopping = machine.state in ("running", "stopping") and exited_ms <= policy.start_grace_s * 1000
    if kept and stopping:
        return  # stopping on its own (a second or two on Fly): parked at a tick after it has
    _end(worker, machine, "exited", known, actions, pool)


def _current_workers(workers: Sequence[WorkerView], machines: _Fleet, policy: ScalingPolicy) -> dict[str, str]:
    """The worker each machine runs now (the freshest heartbeat that is not stale): a machine that
    booted afresh (a failed resume, a restart) registers a new worker while the old one is still
    on the books."""
    current: dict[str, str] = {}
    for w in sorted(workers, key=lambda w: -w.heartbeat_age_ms):
        machine = machines.for_worker(w)
        if machine is not None and w.status != "stopped" and w.heartbeat_age_ms <= policy.stale_worker_s * 1000:
            current[machine.machine_id] = w.worker_id
    return current


def _settled_apart(
    worker: WorkerView,
    machine: Machine,
    current: dict[str, str],
    known: dict[str, LaunchRecord],
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    pool: _Pool,
    suspended: list[WorkerView],
) -> bool:
    """A suspended worker (kept, or ended after ``suspend_keep_s``), or a silent one whose machine
    runs another worker now (retired alone: the machine and its launch are the new worker's)."""
    if machine.state == "suspended" and worker.status == "active" and not worker.busy:
        if _keep_suspended(worker, machine, known, policy, now, actions, pool):
            suspended.append(worker)
        return True
    successor = current.get(machine.machine_id, worker.worker_id)
    silent = worker.heartbeat_age_ms > policy.stale_worker_s * 1000
    if successor == worker.worker_id or worker.busy or not silent:
        return False
    why = f"worker {worker.worker_id}: silent; its machine {machine.machine_id} runs {successor} now"
    actions.append(RetireWorker(worker_id=worker.worker_id, reason=why))
    return True


def _keep_suspended(
    worker: WorkerView,
    machine: Machine,
    known: dict[str, LaunchRecord],
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    pool: _Pool,
) -> bool:
    """A suspended worker is kept for ``suspend_keep_s``, or longer in the warm pool's place while
    it is unpinned and the pool has room. After that a pinned one is resumed and drained, so it
    snapshots its conversation's memory as it exits (destroying the frozen machine would lose
    every turn since its boot); an unpinned one, which takes no snapshot, has its machine destroyed."""
    idle_s = (now - (worker.idle_since or now)) // 1000
    if idle_s <= policy.scale_down_window_s + policy.suspend_keep_s:
        return True
    if not worker.pinned and pool.hold_sleeper():
        return True
    why = f"suspended, idle {idle_s} s"
    resume = _resume_on(worker, machine, f"worker {worker.worker_id}: {why}; resumed to drain, so it snapshots")
    # Without a launch id the resume could not be told from a silent worker: it would be written off.
    if worker.pinned and resume.launch_id is not None:
        actions += [resume, Drain(worker_id=worker.worker_id, reason=resume.reason)]
        return False
    _end(worker, machine, why, known, actions, pool)
    return False


def _stale(
    worker: WorkerView, machine: Machine | None, known: dict[str, LaunchRecord], policy: ScalingPolicy, now: int
) -> bool:
    """No heartbeat for ``stale_worker_s``, unless its machine was resumed (its launch touched)
    within the start grace: frozen while suspended, its heartbeat comes back with it (a worker
    resumed to drain, too)."""
    if worker.heartbeat_age_ms <= policy.stale_worker_s * 1000:
        return False
    if machine is None or worker.status not in ("active", "draining"):
        return True
    # A worker resumed to drain may still be listed suspended for a moment (list lag).
    resuming = machine.state in ("starting", "running") or (
        machine.state == "suspended" and worker.status == "draining"
    )
    if not resuming:
        return True
    record = known.get(machine.launch_id or "") or known.get(worker.launch_id or "")
    resumed_at = None if record is None else record.updated_at
    return resumed_at is None or now - resumed_at > policy.start_grace_s * 1000


def _end(
    worker: WorkerView,
    machine: Machine | None,
    why: str,
    known: dict[str, LaunchRecord],
    actions: list[Action],
    pool: _Pool,
) -> None:
    reason = f"worker {worker.worker_id}: {why}"
    if machine is None:
        launch = worker.launch_id if worker.launch_id in known else None
        actions.append(RetireWorker(worker_id=worker.worker_id, launch_id=launch, reason=f"{reason}; no machine"))
        return
    launch_id = machine.launch_id or worker.launch_id
    # A machine pinned to a conversation (affinity) would serve only that one if started again:
    # it is not a pool member for others, so it goes.
    pinned = launch_id in known and known[launch_id].conversation_id is not None
    if machine.state == "stopped" and launch_id in known and not pinned and pool.take():
        actions.append(
            Park(
                machine_id=machine.machine_id,
                launch_id=launch_id,
                worker_id=worker.worker_id,
                reason=f"{reason}; parked",
            )
        )
        return
    actions.append(
        Destroy(machine_id=machine.machine_id, worker_id=worker.worker_id, launch_id=launch_id, reason=reason)
    )


def _settle_launches(
    ledger: Sequence[LaunchRecord],
    registered: set[str],
    machines: _Fleet,
    pool: _Pool,
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    accounted: set[str],
) -> list[LaunchRecord]:
    """Account for open launches; return those that still count as capacity on their way."""
    pending: list[LaunchRecord] = []
    members = {r.launch_id for r, _ in pool.members}
    for record in ledger:
        if record.launch_id in members:
            continue
        machine = machines.for_launch(record.launch_id)
        if machine is not None:
            accounted.add(machine.machine_id)
        if record.launch_id in registered:
            continue  # its worker is in the snapshot and is handled there
        # Timed from the last change: a pool machine's clock restarts when it is started.
        age_s = (now - (record.updated_at or record.requested_at)) / 1000
        action = _settle_launch(record, machine, age_s, policy)
        if action is None:
            pending.append(record)
        elif not isinstance(action, _Wait):
            actions.append(action)
    return pending


@dataclass(frozen=True)
class _Wait:
    """Nothing to do about a launch this tick, and it is not capacity either."""


def _settle_launch(
    record: LaunchRecord, machine: Machine | None, age_s: float, policy: ScalingPolicy
) -> Action | _Wait | None:
    """What one open launch without a registered worker needs; None: it is capacity on its way."""
    launch = record.launch_id
    if record.state == "parked" and (machine is None or machine.state != "running"):
        if machine is None:
            if age_s > policy.launch_timeout_s:
                return CloseLaunch(launch_id=launch, reason=f"parked launch {launch}: machine gone")
        elif machine.state == "failed":
            return Destroy(machine_id=machine.machine_id, launch_id=launch, reason=f"parked launch {launch}: failed")
        return _Wait()  # stopping or unknown, or not listed yet: looked at again next tick
    if machine is None:
        if age_s <= min(policy.launch_hedge_s, policy.launch_timeout_s):
            return None  # created but not listed yet (provider lists are eventually consistent)
        if age_s <= policy.launch_timeout_s:
            return _Wait()  # slow: another is launched beside it
        if record.state == "requested":
            return ResolveLaunch(launch_id=launch, reason=f"launch {launch} never appeared")
        return CloseLaunch(launch_id=launch, reason=f"launch {launch}: machine gone")
    if machine.state in _ENDED and age_s > policy.start_grace_s:
        why = f"machine {machine.state}, no live worker (exited, or never registered)"
    elif age_s > policy.launch_timeout_s:
        why = f"no worker registered within {policy.launch_timeout_s:g} s"
    elif age_s > policy.launch_hedge_s:
        return _Wait()  # slow to register: another is launched beside it
    else:
        return None
    return Destroy(machine_id=machine.machine_id, launch_id=launch, reason=f"launch {launch}: {why}")


def _collect_orphans(
    fleet: Sequence[Machine],
    accounted: set[str],
    known_launches: set[str],
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
) -> None:
    for m in fleet:
        if m.machine_id in accounted or (m.launch_id is not None and m.launch_id in known_launches):
            continue
        age_ms = None if m.created_at_ms is None else now - m.created_at_ms
        if age_ms is None or age_ms > policy.orphan_grace_s * 1000:
            actions.append(
                CollectOrphan(
                    machine_id=m.machine_id,
                    launch_id=m.launch_id,
                    reason=f"machine {m.machine_id} ({m.state}) has no worker and no launch record",
                )
            )


def _budget_room(
    fleet: Sequence[Machine],
    ledger: Sequence[LaunchRecord],
    machines: _Fleet,
    actions: Sequence[Action],
    policy: ScalingPolicy,
) -> int:
    """How many machines may still be created: the budget minus those that exist or are on their way."""
    if policy.budget_machines is None:
        return 1 << 30
    going = {a.machine_id for a in actions if isinstance(a, Destroy | CollectOrphan)}
    existing = sum(1 for m in fleet if m.machine_id not in going)
    unlisted = sum(
        1 for r in ledger if r.state in ("requested", "running") and machines.for_launch(r.launch_id) is None
    )
    return max(0, policy.budget_machines - existing - unlisted)


def _drains(
    live: Sequence[WorkerView],
    machines: _Fleet,
    excess: int,
    short: int,
    spares: int,
    policy: ScalingPolicy,
    now: int,
    why: str,
    kept: set[str],
) -> list[Action]:
    """Idle workers past the window: ``excess`` of any kind (the ``spares`` freshest unpinned
    ones held as headroom), then up to ``short`` pinned ones whose machine the budget needs for
    conversations waiting without one."""
    window_ms = policy.scale_down_window_s * 1000
    idle = [
        w
        for w in live
        if not w.busy
        and w.idle_since is not None
        and now - w.idle_since >= window_ms
        and machines.for_worker(w) is not None  # only workers on machines we manage
        and not (w.pinned and w.conversation_id in kept)  # its conversation has work, or is expected back
    ]
    idle.sort(key=lambda w: (w.idle_since or 0, w.worker_id))
    held = {w.worker_id for w in [w for w in idle if not w.pinned][::-1][:spares]}
    chosen = [w for w in idle if w.worker_id not in held][: max(0, excess)]
    # An unpinned idle worker takes waiting work itself; a pinned one only frees its machine.
    taken = {w.worker_id for w in chosen}
    chosen += [w for w in idle if w.pinned and w.worker_id not in taken][:short]
    if policy.max_step is not None:
        chosen = chosen[: policy.max_step]
    out: list[Action] = []
    for index, w in enumerate(chosen):
        reason = f"idle {(now - (w.idle_since or now)) // 1000} s; {why}"
        machine = machines.for_worker(w)
        # Excess goes to sleep with its gateway running; a machine the budget needs is given back.
        # (A worker idle for longer than a suspended one is kept is drained instead.)
        idle_ms = now - (w.idle_since or now)
        keep_ms = (policy.scale_down_window_s + policy.suspend_keep_s) * 1000
        if (
            policy.suspend_idle
            and index < excess
            and idle_ms <= keep_ms
            and machine is not None
            and machine.state == "running"
        ):
            launch_id = machine.launch_id or w.launch_id
            out.append(
                Suspend(machine_id=machine.machine_id, worker_id=w.worker_id, launch_id=launch_id, reason=reason)
            )
        else:
            out.append(Drain(worker_id=w.worker_id, reason=reason))
    return out
