"""The planner: a pure function from what we observe to what one tick should do.

``plan(demand, fleet, ledger, policy, now)`` reads the store's demand snapshot, the provider's
machines and the launch ledger; it does no I/O, reads no clock and draws no random numbers, so
it can be tested exhaustively. The reconciler carries the plan out.

Rules, in the order applied:

1. Workers that are gone (stale heartbeat, or their machine stopped) lose their machine and are
   retired; draining workers are destroyed once they have exited, or once they overstay the drain
   deadline while idle. A busy worker (one holding a live lease) is never destroyed.
2. Launches in the ledger count as capacity until their worker registers; one that never shows
   up is looked up by its tag, then given up; one whose machine died is cleaned up.
3. Machines that no worker and no launch account for are collected after a grace period.
4. Desired = ready + in-flight conversations (affinity) or that over ``conversations_per_worker``
   (pool), clamped to [min, max] and the budget. Scale up at once, by at most ``max_step``.
   Scale down only idle managed workers that have been idle for the stabilisation window,
   longest-idle first, at most ``max_step``, by draining.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.plan import (
    Action,
    CloseLaunch,
    CollectOrphan,
    Destroy,
    Drain,
    Launch,
    Plan,
    ResolveLaunch,
    RetireWorker,
)
from autoscaler.policy import ScalingPolicy
from autoscaler.provider import Machine
from contracts.models import DemandSnapshot, LaunchRecord, WorkerView

_ENDED = ("stopped", "failed")


@dataclass(frozen=True)
class _Fleet:
    """Indexes over the observed machines so each worker and launch finds its machine."""

    machines: Sequence[Machine]

    def for_worker(self, worker: WorkerView) -> Machine | None:
        for m in self.machines:
            if worker.launch_id is not None and m.launch_id == worker.launch_id:
                return m
            if m.worker_id is not None and m.worker_id == worker.worker_id:
                return m
            if worker.machine_ref is not None and worker.machine_ref.machine_id == m.machine_id:
                return m
        return None

    def for_launch(self, launch_id: str) -> Machine | None:
        return next((m for m in self.machines if m.launch_id == launch_id), None)


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

    live = _settle_workers(demand.workers, machines, policy, now, actions, accounted)
    launch_ids_with_workers = {w.launch_id for w in demand.workers if w.launch_id is not None}
    pending = _settle_launches(ledger, launch_ids_with_workers, machines, policy, now, actions, accounted)
    _collect_orphans(fleet, accounted, {r.launch_id for r in ledger}, policy, now, actions)

    active = demand.ready_conversations + demand.inflight_conversations
    desired = policy.desired(active)
    capacity = len(live) + pending
    why = (
        f"{demand.ready_conversations} ready + {demand.inflight_conversations} in-flight conversations "
        f"→ {desired} worker(s) ({policy.mode}); {len(live)} live, {pending} launching"
    )
    if desired > capacity:
        room = policy.max_step
        if policy.budget_machines is not None:
            # Machines that exist or are on their way, minus those this plan removes.
            going = {a.machine_id for a in actions if isinstance(a, Destroy | CollectOrphan)}
            existing = sum(1 for m in fleet if m.machine_id not in going)
            room = min(room, policy.budget_machines - existing - _launches_without_machine(ledger, machines))
            if room < desired - capacity:
                why += f"; budget {policy.budget_machines} machine(s)"
        actions += [Launch(reason=why) for _ in range(max(0, min(desired - capacity, room)))]
    elif capacity > desired:
        actions += _drains(live, machines, capacity - desired, policy, now, why)
    return Plan(actions=tuple(actions), desired=desired, current=len(live), launching=pending, summary=why)


def _settle_workers(
    workers: Sequence[WorkerView],
    machines: _Fleet,
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    accounted: set[str],
) -> list[WorkerView]:
    """Handle gone and draining workers; return the live, active ones (the capacity)."""
    live: list[WorkerView] = []
    for w in workers:
        machine = machines.for_worker(w)
        if machine is not None:
            accounted.add(machine.machine_id)
        stale = w.heartbeat_age_ms > policy.stale_worker_s * 1000
        if w.status == "active" and not stale:
            if machine is not None and machine.state in _ENDED:
                _end(w, machine, "its machine stopped under it", actions)
            else:
                live.append(w)
            continue
        if w.busy:
            continue  # a live lease: the job is still running somewhere; never cut it short
        if stale:
            _end(w, machine, f"no heartbeat for {w.heartbeat_age_ms // 1000} s", actions)
        elif machine is not None and machine.state in _ENDED:
            _end(w, machine, f"drained worker exited ({w.status})", actions)
        elif w.status_since is not None and now - w.status_since > policy.drain_deadline_s * 1000:
            _end(w, machine, f"still {w.status} after the {policy.drain_deadline_s:g} s drain deadline", actions)
    return live


def _end(worker: WorkerView, machine: Machine | None, why: str, actions: list[Action]) -> None:
    if machine is None:
        actions.append(RetireWorker(worker_id=worker.worker_id, reason=f"worker {worker.worker_id}: {why}; no machine"))
    else:
        actions.append(
            Destroy(
                machine_id=machine.machine_id,
                worker_id=worker.worker_id,
                launch_id=machine.launch_id or worker.launch_id,
                reason=f"worker {worker.worker_id}: {why}",
            )
        )


def _settle_launches(
    ledger: Sequence[LaunchRecord],
    registered: set[str],
    machines: _Fleet,
    policy: ScalingPolicy,
    now: int,
    actions: list[Action],
    accounted: set[str],
) -> int:
    """Account for open launches; return how many still count as capacity on their way."""
    pending = 0
    timeout_ms = policy.launch_timeout_s * 1000
    for record in ledger:
        if record.state not in ("requested", "running"):
            continue
        machine = machines.for_launch(record.launch_id)
        if machine is not None:
            accounted.add(machine.machine_id)
        if record.launch_id in registered:
            continue  # its worker is in the snapshot and is handled there
        age = now - record.requested_at
        if machine is not None:
            if machine.state in _ENDED:
                actions.append(
                    Destroy(
                        machine_id=machine.machine_id,
                        launch_id=record.launch_id,
                        reason=f"launch {record.launch_id}: machine {machine.state}, no live worker "
                        "(exited, or never registered)",
                    )
                )
            elif age > timeout_ms:
                actions.append(
                    Destroy(
                        machine_id=machine.machine_id,
                        launch_id=record.launch_id,
                        reason=f"launch {record.launch_id}: no worker registered within {policy.launch_timeout_s:g} s",
                    )
                )
            else:
                pending += 1
        elif age <= timeout_ms:
            pending += 1  # created but not listed yet (provider lists are eventually consistent)
        elif record.state == "requested":
            actions.append(
                ResolveLaunch(launch_id=record.launch_id, reason=f"launch {record.launch_id} never appeared")
            )
        else:
            actions.append(CloseLaunch(launch_id=record.launch_id, reason=f"launch {record.launch_id}: machine gone"))
    return pending


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


def _launches_without_machine(ledger: Sequence[LaunchRecord], machines: _Fleet) -> int:
    return sum(1 for r in ledger if r.state in ("requested", "running") and machines.for_launch(r.launch_id) is None)


def _drains(
    live: Sequence[WorkerView],
    machines: _Fleet,
    excess: int,
    policy: ScalingPolicy,
    now: int,
    why: str,
) -> list[Action]:
    window_ms = policy.scale_down_window_s * 1000
    idle = [
        w
        for w in live
        if not w.busy
        and w.idle_since is not None
        and now - w.idle_since >= window_ms
        and machines.for_worker(w) is not None  # only workers on machines we manage
    ]
    idle.sort(key=lambda w: (w.idle_since or 0, w.worker_id))
    return [
        Drain(worker_id=w.worker_id, reason=f"idle {(now - (w.idle_since or now)) // 1000} s; {why}")
        for w in idle[: min(excess, policy.max_step)]
    ]
