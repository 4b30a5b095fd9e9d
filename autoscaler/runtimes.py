"""One long-lived runtime machine per active Mission Control account: the pure rule and its tick.

A runtime machine runs ``factory runtime`` for one account (the worker image with
``FACTORY_COMMAND=runtime``). Its worker id is ``runtime-<account>``, carried by the provider
(a droplet tag, a local process record), so a listing tells which account a machine serves. Runtime
machines live under their own fleet tag and their launches under their own ledger provider name,
so worker scaling never sees them (nor they it).

:func:`plan_runtimes` decides, purely: an active account without a live machine (and no launch of
it on its way) gets one; a second live machine of one account is destroyed (the oldest stays); a
machine that ended (stopped, failed) is destroyed, and its account, if still active, gets a new one
in the same plan; a machine of an account that is gone or inactive is destroyed.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from autoscaler.errors import ProviderError
from autoscaler.provider import LaunchSpec, Machine, Provider, find_launch
from contracts.models import LaunchRecord
from contracts.roles import FleetStore

log = structlog.get_logger("autoscaler.runtimes")
WORKER_PREFIX = "runtime-"
LAUNCH_PREFIX = "rt:"  # a DigitalOcean tag allows letters, digits, _ - :
# Launches younger than this that no listing shows yet are on their way (lists lag behind creates).
LAUNCH_TIMEOUT_MS = 10 * 60_000
_LIVE = frozenset({"starting", "running", "unknown"})  # unknown: never risk a second machine


def runtime_worker_id(account_id: str) -> str:
    return WORKER_PREFIX + account_id


def new_launch_id(account_id: str) -> str:
    return f"{LAUNCH_PREFIX}{account_id}:{secrets.token_hex(4)}"


def account_of_launch(launch_id: str) -> str | None:
    if not launch_id.startswith(LAUNCH_PREFIX):
        return None
    account, dot, _ = launch_id[len(LAUNCH_PREFIX) :].rpartition(":")
    return account if dot and account else None


def account_of(machine: Machine) -> str | None:
    if machine.worker_id is not None and machine.worker_id.startswith(WORKER_PREFIX):
        return machine.worker_id[len(WORKER_PREFIX) :] or None
    return None if machine.launch_id is None else account_of_launch(machine.launch_id)


def ledger_provider(provider: str) -> str:
    """The ledger's provider name for runtime launches: the worker reconciler filters them out."""
    return f"runtime-{provider}"


@dataclass(frozen=True)
class RuntimePlan:
    create: tuple[str, ...] = ()  # account ids
    destroy: tuple[tuple[str, str], ...] = ()  # (machine id, reason)

    @property
    def empty(self) -> bool:
        return not self.create and not self.destroy


def plan_runtimes(active: Collection[str], machines: Sequence[Machine], launching: Collection[str] = ()) -> RuntimePlan:
    """The changes that leave exactly one live runtime machine per active account and no other."""
    live: dict[str, list[Machine]] = {}
    destroy: list[tuple[str, str]] = []
    for machine in sorted(machines, key=lambda m: (m.created_at_ms or 0, m.machine_id)):
        account = account_of(machine)
        if machine.state not in _LIVE:
            if machine.state != "stopping":
                destroy.append((machine.machine_id, f"runtime of {account} {machine.state}: replaced"))
        elif account is None or account not in active:
            destroy.append((machine.machine_id, f"account {account} is not active"))
        else:
            live.setdefault(account, []).append(machine)
    for account, running in live.items():
        destroy += [(m.machine_id, f"a second runtime of {account}") for m in running[1:]]
    create = tuple(sorted(a for a in active if a not in live and a not in launching))
    return RuntimePlan(create=create, destroy=tuple(destroy))


@dataclass
class RuntimeTick:
    plan: RuntimePlan
    created: list[Machine] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def launching_accounts(ledger: Iterable[LaunchRecord], machines: Sequence[Machine], now_ms: int) -> set[str]:
    """Accounts with a launch made lately (or whose create is still unanswered) that no listing shows yet."""
    listed = {m.launch_id for m in machines}
    return {
        account
        for record in ledger
        if record.state in ("requested", "running")
        and record.launch_id not in listed
        and now_ms - record.requested_at < LAUNCH_TIMEOUT_MS
        and (account := account_of_launch(record.launch_id)) is not None
    }


async def reconcile_runtimes(
    provider: Provider,
    store: FleetStore,
    active: Collection[str],
    spec_for: Callable[[str, str], Awaitable[LaunchSpec]],
    *,
    dry_run: bool = False,
    only: str | None = None,
    find_attempts: int = 3,
    find_interval_s: float = 1.0,
) -> RuntimeTick:
    """Observe, plan, apply: one tick. ``spec_for(account, launch_id)`` builds a launch's spec (it
    issues the account's service token); ``only``: act on that account alone. Every create is in
    the ledger before the call, and an ambiguous create is looked up by its launch tag, never repeated."""
    machines = await provider.list()
    if only is not None:  # one account's machines and launches, as if it were the only one
        machines = [m for m in machines if account_of(m) == only]
        active = {only} & set(active)
    name = ledger_provider(provider.name)
    ledger = [
        r
        for r in await store.ledger_list()
        if r.provider == name and (only is None or account_of_launch(r.launch_id) == only)
    ]
    now = await store.now_ms()
    plan = plan_runtimes(active, machines, launching_accounts(ledger, machines, now))
    tick = RuntimeTick(plan)
    if dry_run:
        return tick
    by_id = {m.machine_id: m for m in machines}
    for machine_id, reason in plan.destroy:
        machine = by_id[machine_id]
        try:
            if machine.state in _LIVE:
                await provider.stop(machine)  # drain: the runtime finishes its jobs and goes offline
            await provider.destroy(machine)
        except ProviderError as exc:
            tick.errors.append(f"destroy {machine_id}: {exc}")
            continue
        if machine.launch_id is not None:
            await store.ledger_update(machine.launch_id, "gone", detail=reason[:500])
        tick.destroyed.append(machine_id)
        log.info("runtime machine destroyed", machine_id=machine_id, reason=reason)
    for account in plan.create:
        launch_id = new_launch_id(account)
        await store.ledger_record(LaunchRecord(launch_id=launch_id, provider=name, requested_at=now))
        made: Machine | None = None
        try:
            made = await provider.create(await spec_for(account, launch_id))
        except ProviderError as exc:
            if exc.ambiguous:
                made = await find_launch(provider, launch_id, attempts=find_attempts, interval_s=find_interval_s)
            if made is None:
                await store.ledger_update(launch_id, "failed", detail=str(exc)[:500])
                tick.errors.append(f"create for {account}: {exc}")
        if made is None:
            continue
        await store.ledger_update(launch_id, "running", machine_id=made.machine_id)
        tick.created.append(made)
        log.info("runtime machine created", account_id=account, machine_id=made.machine_id, launch_id=launch_id)
    return tick
