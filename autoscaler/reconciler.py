"""One reconcile tick: observe → plan → apply, under the store's single reconcile lock.

Level-triggered: every tick observes the world afresh (store demand, provider machines, launch
ledger) and trusts nothing from the last one. The plan is pure (autoscaler.planner); applying it
is where the I/O lives, each action settled in the store so that a crash mid-tick leaves a
state the next tick can read:

* a launch is written to the ledger *before* the provider is asked, so a create whose answer is
  lost is found again by its launch tag instead of being repeated;
* a worker is drained through the store (it stops claiming and exits by itself); its machine is
  destroyed (or parked in the warm pool) on a later tick, once it has exited;
* a pool machine is marked running in the ledger before it is started, so its launch timeout
  runs from the start.

A tick holds the lock for as long as it runs: a keeper renews it every third of its TTL, and the
tick stops (the actions in flight finish, the rest are left to the next tick) if a renewal
fails. Actions run concurrently, a few at a time; the provider's rate limiter paces them, and a
tick starts no new action after ``tick_budget_s`` (what is left is replanned by the next tick).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import structlog

from autoscaler import plan as actions
from autoscaler.errors import ProviderError, ReconcileBusy, ReconcileLockLost
from autoscaler.plan import Plan
from autoscaler.planner import plan
from autoscaler.policy import ScalingPolicy
from autoscaler.provider import LaunchSpec, Machine, Provider, Reconfigures, Suspends, find_launch
from contracts.errors import FactoryError
from contracts.models import DemandSnapshot, LaunchRecord, ReconcileRecord, ReconcileStep, SetWorkerStatusRequest
from contracts.roles import FleetStore

log = structlog.get_logger("autoscaler")
# (launch id, worker id, the conversation it is pinned to or None, whether it pins itself at its
# first job) -> what the machine runs
SpecFactory = Callable[[str, str, str | None, bool], LaunchSpec]


# A tick with failed actions is followed by another this soon, doubling while ticks keep failing
# (never past the watch interval): a refused create leaves a conversation waiting for its machine,
# and an outage is not hammered.
RETRY_AFTER_S = 2.0


def next_tick_in_s(interval_s: float, recheck_in_s: float | None, failed_ticks: int) -> float:
    """How long a watch waits before its next tick: the interval, or sooner when the plan asked to
    look again (``Plan.recheck_in_s``) or the last ``failed_ticks`` ticks in a row had failed actions."""
    wait = interval_s if recheck_in_s is None else min(interval_s, recheck_in_s)
    if failed_ticks > 0:
        wait = min(wait, RETRY_AFTER_S * 2 ** min(failed_ticks - 1, 16))
    return wait


def new_launch_id() -> str:
    # Sortable by time, unique without coordination, and valid as a Fly name and a DigitalOcean tag.
    return f"{time.time_ns() // 1_000_000:x}{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Outcome:
    action: actions.Action
    ok: bool
    detail: str = ""
    machine_id: str | None = None
    launch_id: str | None = None


@dataclass(frozen=True)
class Observation:
    demand: DemandSnapshot
    fleet: list[Machine]
    ledger: list[LaunchRecord]


@dataclass
class TickResult:
    plan: Plan
    applied: bool
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def record(self, provider: str, at: int) -> ReconcileRecord:
        """The tick as operators read it (the console), each action with its outcome."""
        outcomes = {id(o.action): o for o in self.outcomes}
        steps = []
        for action in self.plan.actions:
            outcome = outcomes.get(id(action))
            steps.append(
                ReconcileStep(
                    action=action.action,
                    target=actions.target(action),
                    reason=action.reason,
                    ok=None if outcome is None else outcome.ok,
                    detail=None if outcome is None else outcome.detail,
                )
            )
        return ReconcileRecord(
            at=at,
            provider=provider,
            dry_run=not self.applied,
            summary=self.plan.summary,
            desired=self.plan.desired,
            current=self.plan.current,
            launching=self.plan.launching,
            steps=steps,
        )


class Reconciler:
    def __init__(
        self,
        store: FleetStore,
        provider: Provider,
        policy: ScalingPolicy,
        spec_for: SpecFactory,
        *,
        holder: str | None = None,
        lock_ttl_s: float = 120.0,
        new_id: Callable[[], str] = new_launch_id,
        find_attempts: int = 3,
        find_interval_s: float = 2.0,
        concurrency: int = 8,
        tick_budget_s: float = 90.0,
    ) -> None:
        self.store = store
        self.provider = provider
        self.policy = policy
        self.spec_for = spec_for
        self.holder = holder or f"reconcile-{secrets.token_hex(4)}"
        self.lock_ttl_s = lock_ttl_s
        self.new_id = new_id
        self.find_attempts = find_attempts
        self.find_interval_s = find_interval_s
        self.concurrency = concurrency
        self.tick_budget_s = tick_budget_s

    async def observe(self) -> Observation:
        demand = await self.store.fleet_demand()
        fleet = await self.provider.list()
        ledger = [r for r in await self.store.ledger_list() if r.provider == self.provider.name]
        return Observation(demand, fleet, ledger)

    async def tick(self, *, dry_run: bool = False) -> TickResult:
        if dry_run:
            seen = await self.observe()
            return TickResult(plan(seen.demand, seen.fleet, seen.ledger, self.policy, seen.demand.now), applied=False)
        ttl_ms = int(self.lock_ttl_s * 1000)
        if not await self.store.acquire_reconcile_lock(self.holder, ttl_ms):
            raise ReconcileBusy("another reconcile holds the lock; try again when it has finished")
        lost: list[str] = []
        result: TickResult | None = None
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep_lock, ttl_ms, tg.cancel_scope, lost)
                try:
                    result = await self._observe_plan_apply()
                except Exception as exc:  # kept whole, not wrapped in the task group's ExceptionGroup
                    error = exc
                tg.cancel_scope.cancel()
            if error is not None:
                raise error
            if lost or result is None:
                raise ReconcileLockLost(lost[0] if lost else "the tick was stopped before it finished")
            return result
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.release_reconcile_lock(self.holder)

    async def _keep(self, result: TickResult, now: int) -> None:
        """Record the tick for operators; what it did is done either way, so a failure is only logged."""
        try:
            await self.store.record_reconcile(result.record(self.provider.name, now))
        except FactoryError as exc:
            log.warning("could not record the reconcile for operators", error=str(exc))

    async def _keep_lock(self, ttl_ms: int, scope: anyio.CancelScope, lost: list[str]) -> None:
        """Renew the lock every third of its TTL while the tick runs; stop the tick if it is lost."""
        while True:
            await anyio.sleep(self.lock_ttl_s / 3)
            try:
                renewed = await self.store.acquire_reconcile_lock(self.holder, ttl_ms)
            except FactoryError as exc:
                log.warning("reconcile lock renewal failed", error=str(exc))
                continue  # the lock still has two thirds of its TTL; try again
            if not renewed:
                lost.append(
                    "the reconcile lock was taken over while this tick ran; its remaining actions were not applied"
                )
                scope.cancel()
                return

    async def _observe_plan_apply(self) -> TickResult:
        # Keep the views honest first: expired leases back to the queue (claims don't need it).
        await self.store.release_expired()
        seen = await self.observe()
        planned = plan(seen.demand, seen.fleet, seen.ledger, self.policy, seen.demand.now)
        outcomes = await self._apply(planned.actions, seen.fleet)
        result = TickResult(planned, applied=True, outcomes=outcomes)
        await self._keep(result, seen.demand.now)
        return result

    async def _apply(self, planned: Sequence[actions.Action], fleet: Sequence[Machine]) -> list[Outcome]:
        tick = _TickActions(self, {m.machine_id: m for m in fleet})
        outcomes: list[Outcome | None] = [None] * len(planned)
        blocked: list[str] = []  # why launches stopped (a create that cannot succeed)
        limiter = anyio.CapacityLimiter(max(1, self.concurrency))
        deadline = anyio.current_time() + self.tick_budget_s

        async def one(index: int, action: actions.Action) -> None:
            async with limiter:
                if anyio.current_time() > deadline:
                    outcomes[index] = Outcome(action, True, f"deferred: past the tick's {self.tick_budget_s:g} s")
                    return
                if isinstance(action, actions.Launch) and blocked:
                    outcomes[index] = Outcome(action, False, f"skipped: {blocked[0]}")
                    return
                try:
                    outcome = await actions.dispatch(action, tick)
                except FactoryError as exc:
                    outcome = Outcome(action, False, str(exc))
                    if isinstance(action, actions.Launch) and not exc.retryable:
                        # The same create would fail the same way (bad token, bad config, quota).
                        blocked.append(str(exc))
                outcomes[index] = outcome
            log.info(
                "applied" if outcome.ok else "failed",
                action=action.action,
                ok=outcome.ok,
                detail=outcome.detail,
                reason=action.reason,
            )

        async with anyio.create_task_group() as tg:
            for index, action in enumerate(planned):
                tg.start_soon(one, index, action)
        return [o for o in outcomes if o is not None]


def _worker_id(r: Reconciler, launch_id: str) -> str:
    """The worker id a launch's machine is told (a pool machine keeps it across starts)."""
    return f"{r.provider.name}-{launch_id}"


def _reconfigures(provider: Provider) -> Reconfigures:
    if not isinstance(provider, Reconfigures):
        raise ProviderError(
            provider.name,
            "reconfigure",
            "this provider cannot give a stopped machine a conversation; set pin_pool_starts off",
        )
    return provider


@dataclass(frozen=True)
class _TickActions:
    """The reconciler's ``PlanHandler``: one tick's actions carried out on the store and the provider."""

    reconciler: Reconciler
    machines: Mapping[str, Machine]  # what the tick observed, by machine id

    async def on_launch(self, action: actions.Launch) -> Outcome:
        r = self.reconciler
        launch_id = r.new_id()
        worker_id = _worker_id(r, launch_id)
        now = await r.store.now_ms()
        pin = action.conversation_id
        await r.store.ledger_record(
            LaunchRecord(launch_id=launch_id, provider=r.provider.name, requested_at=now, conversation_id=pin)
        )
        try:
            machine = await r.provider.create(
                r.spec_for(launch_id, worker_id, pin, action.sticky), parked=action.parked
            )
        except ProviderError as exc:
            if not exc.ambiguous:
                await r.store.ledger_update(launch_id, "failed", detail=str(exc)[:500])
                raise
            # The create may have happened: look for it by its tag; never create it twice.
            found = await find_launch(r.provider, launch_id, attempts=r.find_attempts, interval_s=r.find_interval_s)
            if found is None:
                # Left "requested": it counts as capacity until the launch timeout, then is resolved.
                return Outcome(action, False, f"create outcome unknown ({exc}); will look again", launch_id=launch_id)
            machine = found
        await r.store.ledger_update(launch_id, "parked" if action.parked else "running", machine_id=machine.machine_id)
        return Outcome(
            action,
            True,
            f"machine {machine.machine_id} ({worker_id}{f', for {pin}' if pin else ''})"
            + (", parked" if action.parked else ""),
            machine_id=machine.machine_id,
            launch_id=launch_id,
        )

    async def on_start(self, action: actions.Start) -> Outcome:
        r = self.reconciler
        machine = self.machines.get(action.machine_id)
        if machine is None:
            return Outcome(
                action, False, f"machine {action.machine_id} is no longer listed", launch_id=action.launch_id
            )
        # Running in the ledger first: its launch timeout runs from now, and a start whose answer
        # is lost is covered by it (the worker registers, or the timeout cleans the machine up).
        await r.store.ledger_update(action.launch_id, "running", detail="started from the warm pool")
        try:
            if action.conversation_id is not None or machine.conversation_id is not None:
                # Told its conversation before it boots, so it restores that conversation's memory;
                # or, still told an earlier one by a start that failed after its update, given the
                # pool's environment back, so it does not boot pinned to a conversation nobody asked for.
                await self._tell(machine, action.launch_id, action.conversation_id)
            await r.provider.start(machine)
        except ProviderError as exc:
            if not exc.ambiguous:
                await r.store.ledger_update(action.launch_id, "parked", detail=str(exc)[:500])
            raise
        return Outcome(action, True, f"machine {action.machine_id} started", machine_id=action.machine_id)

    async def on_suspend(self, action: actions.Suspend) -> Outcome:
        r = self.reconciler
        machine = self.machines.get(action.machine_id)
        if machine is None:
            return self._unlisted(action)
        if not isinstance(r.provider, Suspends):
            raise ProviderError(
                r.provider.name, "suspend", "this provider cannot suspend machines; set suspend_idle off"
            )
        await r.provider.suspend(machine)
        return Outcome(action, True, f"machine {action.machine_id} suspended", machine_id=action.machine_id)

    async def on_resume(self, action: actions.Resume) -> Outcome:
        machine = self.machines.get(action.machine_id)
        if machine is None:
            return self._unlisted(action)
        if action.launch_id is not None:
            # Touched first: the planner gives a resumed worker time to heartbeat again from here.
            await self.reconciler.store.ledger_update(action.launch_id, "running", detail="resumed")
        await self.reconciler.provider.start(machine)
        return Outcome(action, True, f"machine {action.machine_id} resumed", machine_id=action.machine_id)

    @staticmethod
    def _unlisted(action: actions.Suspend | actions.Resume) -> Outcome:
        return Outcome(action, False, f"machine {action.machine_id} is no longer listed")

    async def on_park(self, action: actions.Park) -> Outcome:
        machine = self.machines.get(action.machine_id)
        if machine is not None and machine.conversation_id is not None:
            # Started told a conversation (its list entry names it): back to the pool's environment,
            # so the next start that names none boots it free to take any.
            await self._tell(machine, action.launch_id, None)
        if action.worker_id is not None:
            await self._set_status(action.worker_id, "stopped", action.reason)
        await self.reconciler.store.ledger_update(action.launch_id, "parked", detail=action.reason[:500])
        return Outcome(action, True, f"machine {action.machine_id} parked", machine_id=action.machine_id)

    async def _tell(self, machine: Machine, launch_id: str, conversation_id: str | None) -> None:
        """Give a stopped pool machine the environment it boots with: pinned to ``conversation_id``,
        or (None) the pool's, unpinned and sticky as launches are."""
        r = self.reconciler
        sticky = conversation_id is None and r.policy.sticky_launches
        spec = r.spec_for(launch_id, _worker_id(r, launch_id), conversation_id, sticky)
        await _reconfigures(r.provider).reconfigure(machine, spec)

    async def on_drain(self, action: actions.Drain) -> Outcome:
        await self._set_status(action.worker_id, "draining", action.reason)
        return Outcome(action, True, f"worker {action.worker_id} draining")

    async def on_destroy(self, action: actions.Destroy) -> Outcome:
        return await self._remove(action, action.worker_id)

    async def on_collect_orphan(self, action: actions.CollectOrphan) -> Outcome:
        return await self._remove(action, None)

    async def on_retire_worker(self, action: actions.RetireWorker) -> Outcome:
        await self._set_status(action.worker_id, "stopped", action.reason)
        if action.launch_id is not None:
            await self.reconciler.store.ledger_update(action.launch_id, "gone", detail=action.reason[:500])
        return Outcome(action, True, f"worker {action.worker_id} retired", launch_id=action.launch_id)

    async def on_resolve_launch(self, action: actions.ResolveLaunch) -> Outcome:
        store = self.reconciler.store
        found = await self.reconciler.provider.find(action.launch_id)
        if found is None:
            await store.ledger_update(action.launch_id, "failed", detail="never appeared at the provider")
            return Outcome(action, True, "not found: launch given up", launch_id=action.launch_id)
        await store.ledger_update(action.launch_id, "running", machine_id=found.machine_id)
        return Outcome(action, True, f"found machine {found.machine_id}: adopted", machine_id=found.machine_id)

    async def on_close_launch(self, action: actions.CloseLaunch) -> Outcome:
        await self.reconciler.store.ledger_update(action.launch_id, "gone", detail=action.reason[:500])
        return Outcome(action, True, "closed", launch_id=action.launch_id)

    async def _remove(self, action: actions.Destroy | actions.CollectOrphan, worker_id: str | None) -> Outcome:
        """Destroy the machine (if it is still there), stop its worker, close its launch."""
        machine = self.machines.get(action.machine_id)
        if machine is not None:
            await self.reconciler.provider.destroy(machine)
        if worker_id is not None:
            await self._set_status(worker_id, "stopped", action.reason)
        if action.launch_id is not None:
            await self.reconciler.store.ledger_update(action.launch_id, "gone", detail=action.reason[:500])
        return Outcome(action, True, f"machine {action.machine_id} destroyed", machine_id=action.machine_id)

    async def _set_status(self, worker_id: str, status: str, reason: str) -> None:
        await self.reconciler.store.fleet_set_worker_status(
            SetWorkerStatusRequest.model_validate({"worker_id": worker_id, "status": status, "reason": reason[:500]})
        )
