"""Reconcile a real store against the loopback Fly and DigitalOcean fakes, faults included.

Workers are played by the test: when a machine appears at the fake, the test registers its
worker in the store (as the worker process would) and has it claim a message; when a worker
is drained, the test stops its machine (as the worker exiting would).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from autoscaler.errors import ProviderError, ReconcileBusy, ReconcileLockLost
from autoscaler.plan import Destroy, Drain, Launch, Start
from autoscaler.policy import ScalingPolicy
from autoscaler.provider import LaunchSpec, Machine, Provider
from autoscaler.providers.digitalocean import DigitalOceanConfig, DigitalOceanProvider
from autoscaler.providers.fly import FlyConfig, FlyProvider
from autoscaler.reconciler import Reconciler, TickResult, next_tick_in_s
from contracts.launch import WorkerEnvironment
from contracts.models import (
    EnqueueRequest,
    LeaseRef,
    MachineRef,
    MessagePayload,
    SetWorkerStatusRequest,
    WorkerRegistration,
)
from contracts.retry import RetryPolicy
from contracts.sqlite import SqliteStore
from tests.autoscaler.conftest import DO_TOKEN, FLY_TOKEN, SECRET_VALUE, unlimited
from tests.fakes import FakeDigitalOceanApi, FakeFlyApi

pytestmark = pytest.mark.anyio
POLICY = ScalingPolicy(max_workers=10, max_step=10, scale_down_window_s=0, orphan_grace_s=0)
FAST_RETRY = RetryPolicy(attempts=3, initial_s=0.01, max_s=0.05, jitter_s=0.0, max_retry_after_s=0.05)


def spec_for(launch_id: str, worker_id: str, conversation_id: str | None, sticky: bool = False) -> LaunchSpec:
    environment = WorkerEnvironment(
        launch_id=launch_id,
        worker_id=worker_id,
        store="https://example.convex.cloud",
        convex_auth_token=SecretStr(SECRET_VALUE),
        conversation_id=conversation_id,
        sticky=True if sticky and conversation_id is None else None,
    )
    return LaunchSpec(environment=environment)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "fleet.db")
    try:
        yield s
    finally:
        await s.aclose()


async def enqueue(store: SqliteStore, *conversations: str) -> None:
    for c in conversations:
        await store.enqueue(
            EnqueueRequest(
                conversation_id=c,
                agent_key="default",
                payload=MessagePayload(provider="app", provider_user_id="u", message_text=f"hi {c}"),
            )
        )


class Workers:
    """Plays the worker processes the machines would run."""

    def __init__(self, store: SqliteStore, provider: Provider) -> None:
        self.store = store
        self.provider = provider
        self.leases: dict[str, LeaseRef] = {}

    async def boot(self, pin: str | None = None) -> list[Machine]:
        """Register a worker for every running machine that has none yet (pinned to ``pin``, as
        a launch for one conversation would be), and let it claim."""
        booted = []
        known = {w.worker_id for w in await self.store.list_workers()}
        for m in await self.provider.list():
            if m.worker_id is None or m.worker_id in known or m.state not in ("running", "starting"):
                continue
            await self.store.worker_register(
                WorkerRegistration(
                    worker_id=m.worker_id,
                    provider=self.provider.name,
                    launch_id=m.launch_id,
                    machine_ref=MachineRef(machine_id=m.machine_id),
                    conversation_id=pin,
                )
            )
            job = await self.store.worker_claim(m.worker_id)
            if job is not None:
                self.leases[m.worker_id] = LeaseRef(
                    worker_id=m.worker_id, message_id=job.message_id, lease_id=job.lease_id
                )
            booted.append(m)
        return booted

    async def finish_all(self) -> None:
        for lease in self.leases.values():
            assert (await self.store.worker_complete(lease)).ok
        self.leases.clear()


def ids(result: TickResult, kind: type) -> list[object]:
    return [a for a in result.plan.actions if isinstance(a, kind)]


async def run_fleet_lifecycle(
    store: SqliteStore, provider: Provider, stop_machine: object, live: object, creates: object
) -> None:
    """Scale up with faults, serve, scale down by draining, converge with nothing left behind."""
    reconciler = Reconciler(store, provider, POLICY, spec_for, find_interval_s=0.05)
    workers = Workers(store, provider)
    await enqueue(store, "a", "b", "c")
    first = await reconciler.tick()
    assert len(ids(first, Launch)) == 3 and not first.errors
    assert len(await workers.boot()) == 3
    assert len(workers.leases) == 3
    steady = await reconciler.tick()
    assert steady.plan.empty, steady.plan.actions

    # Nothing to drain while every worker is busy, even when demand shrinks to nothing in the plan.
    await workers.finish_all()
    drained = await reconciler.tick()
    drains = ids(drained, Drain)
    assert len(drains) == 3 and not drained.errors
    again = await reconciler.tick()
    assert again.plan.empty  # draining workers are left to exit on their own

    for d in drains:
        stop_machine(d.worker_id)  # type: ignore[attr-defined, operator]
    cleaned = await reconciler.tick()
    assert len(ids(cleaned, Destroy)) == 3 and not cleaned.errors
    assert live() == []  # type: ignore[operator]
    assert (await reconciler.tick()).plan.empty
    assert await store.ledger_list() == []
    assert {w.status for w in await store.list_workers()} == {"stopped"}
    assert creates() == 3  # type: ignore[operator]


def fly_provider(api: FakeFlyApi) -> FlyProvider:
    config = FlyConfig(api_token=SecretStr(FLY_TOKEN), app=api.app, image="worker:1", api_base_url=api.url)
    return FlyProvider(config, limiter=unlimited(), retry=FAST_RETRY)


def do_provider(api: FakeDigitalOceanApi) -> DigitalOceanProvider:
    config = DigitalOceanConfig(token=SecretStr(DO_TOKEN), worker_image="worker:1", api_base_url=api.api_url)
    return DigitalOceanProvider(config, limiter=unlimited(), retry=FAST_RETRY)


def _fly_stopper(api: FakeFlyApi):  # type: ignore[no-untyped-def]
    def stop(worker_id: str) -> None:
        with api.lock:
            for m in api.machines.values():
                if m["config"]["metadata"].get("factory_worker_id") == worker_id:
                    m["state"] = "stopped"

    return stop


def _do_stopper(api: FakeDigitalOceanApi):  # type: ignore[no-untyped-def]
    def stop(worker_id: str) -> None:
        with api.lock:
            for d in api.droplets.values():
                if any(t.endswith(worker_id) for t in d["tags"]):
                    d["status"] = "off"

    return stop


async def test_fly_fleet_lifecycle(store: SqliteStore, fly_api: FakeFlyApi) -> None:
    provider = fly_provider(fly_api)
    try:
        await run_fleet_lifecycle(store, provider, _fly_stopper(fly_api), fly_api.live, lambda: fly_api.count("create"))
    finally:
        await provider.aclose()


async def test_digitalocean_fleet_lifecycle(store: SqliteStore, do_api: FakeDigitalOceanApi) -> None:
    provider = do_provider(do_api)
    try:
        await run_fleet_lifecycle(store, provider, _do_stopper(do_api), do_api.live, lambda: do_api.count("create"))
    finally:
        await provider.aclose()


async def _exit(store: SqliteStore, worker_id: str) -> None:
    """What ``factory worker run`` records as its worker exits, snapshot uploaded."""
    await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id=worker_id, status="stopped", reason="exited"))


async def test_droplets_are_destroyed_as_their_workers_exit_not_once_listed_off(
    store: SqliteStore, do_api: FakeDigitalOceanApi
) -> None:
    """A droplet bills until it is destroyed, powered off or not: its 5-15 s power-off and the
    wait for the next tick are not billed any more."""
    provider = do_provider(do_api)
    try:
        reconciler = Reconciler(store, provider, POLICY, spec_for, find_interval_s=0.05)
        workers = Workers(store, provider)
        await enqueue(store, "a", "b")
        assert len(ids(await reconciler.tick(), Launch)) == 2
        assert len(await workers.boot()) == 2
        await workers.finish_all()
        drains = ids(await reconciler.tick(), Drain)
        assert len(drains) == 2
        for d in drains:
            await _exit(store, d.worker_id)  # type: ignore[attr-defined]
        assert [d["status"] for d in do_api.live()] == ["active", "active"]  # still powering off
        cleaned = await reconciler.tick()
        assert len(ids(cleaned, Destroy)) == 2 and not cleaned.errors
        assert do_api.live() == [] and await store.ledger_list() == []
        assert (await reconciler.tick()).plan.empty
    finally:
        await provider.aclose()


async def test_a_lost_create_response_is_adopted_not_repeated(store: SqliteStore, fly_api: FakeFlyApi) -> None:
    provider = fly_provider(fly_api)
    try:
        reconciler = Reconciler(store, provider, POLICY, spec_for, find_interval_s=0.05)
        await enqueue(store, "a", "b")
        fly_api.lose_response_next("create", mode="lost_504")
        fly_api.list_lag(1)  # and the new machine is not listed at once
        result = await reconciler.tick()
        assert len(ids(result, Launch)) == 2 and not result.errors
        assert fly_api.count("create") == 2 and len(fly_api.live()) == 2
        # The next ticks see two launches on their way: no third machine.
        assert (await reconciler.tick()).plan.empty
        assert fly_api.count("create") == 2
        assert {r.state for r in await store.ledger_list()} == {"running"}
    finally:
        await provider.aclose()


async def test_a_create_that_never_happened_is_resolved_after_the_launch_timeout(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    provider = fly_provider(fly_api)
    try:
        policy = POLICY.model_copy(update={"launch_timeout_s": 1.0})
        reconciler = Reconciler(store, provider, policy, spec_for, find_attempts=1)
        await enqueue(store, "a")
        fly_api.timeout_next("create", delay_s=2.0, commit=False)
        first = await reconciler.tick()
        assert first.errors and "unknown" in first.errors[0].detail
        [pending] = await store.ledger_list()
        assert pending.state == "requested"
        await anyio.sleep(1.2)
        second = await reconciler.tick()
        kinds = [a.action for a in second.plan.actions]
        assert kinds == ["resolve_launch", "launch"]
        assert fly_api.count("create") == 2 and len(fly_api.live()) == 1
    finally:
        await provider.aclose()


async def test_rate_limits_and_server_errors_are_ridden_out(store: SqliteStore, do_api: FakeDigitalOceanApi) -> None:
    provider = do_provider(do_api)
    try:
        reconciler = Reconciler(store, provider, POLICY, spec_for)
        await enqueue(store, "a", "b")
        do_api.rate_limit_next("list", retry_after=1)
        do_api.fail_next("list", status=503)
        result = await reconciler.tick()
        assert len(ids(result, Launch)) == 2 and not result.errors
        assert len(do_api.live()) == 2
    finally:
        await provider.aclose()


async def test_an_orphan_is_collected_and_a_foreign_machine_is_left_alone(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    provider = fly_provider(fly_api)
    try:
        orphan = fly_api.add_machine(metadata={"factory_role": "worker", "factory_launch_id": "forgotten"})
        foreign = fly_api.add_machine(metadata={"team": "web"})
        result = await Reconciler(store, provider, POLICY, spec_for).tick()
        assert [a.machine_id for a in result.plan.actions] == [orphan]  # type: ignore[union-attr]
        assert [m["id"] for m in fly_api.live()] == [foreign]
    finally:
        await provider.aclose()


async def test_a_bad_token_fails_the_tick_with_the_provider_error(store: SqliteStore, fly_api: FakeFlyApi) -> None:
    config = FlyConfig(api_token=SecretStr("fm2_wrong"), app=fly_api.app, image="worker:1", api_base_url=fly_api.url)
    provider = FlyProvider(config, limiter=unlimited(), retry=FAST_RETRY)
    try:
        with pytest.raises(ProviderError, match="401"):
            await Reconciler(store, provider, POLICY, spec_for).tick()
        # The lock was released: the next reconcile is not blocked.
        assert await store.acquire_reconcile_lock("next", 1_000)
    finally:
        await provider.aclose()


async def test_two_reconciles_cannot_run_at_once(store: SqliteStore, fly_api: FakeFlyApi) -> None:
    provider = fly_provider(fly_api)
    try:
        assert await store.acquire_reconcile_lock("cron", 60_000)
        with pytest.raises(ReconcileBusy):
            await Reconciler(store, provider, POLICY, spec_for).tick()
        dry = await Reconciler(store, provider, POLICY, spec_for).tick(dry_run=True)
        assert not dry.applied
    finally:
        await provider.aclose()


async def test_a_long_tick_keeps_the_lock_and_one_that_loses_it_stops(store: SqliteStore, fly_api: FakeFlyApi) -> None:
    # A create Fly answers after 1.5 s (then 504: looked up, adopted) outlasts a 0.6 s lock TTL.
    config = FlyConfig(
        api_token=SecretStr(FLY_TOKEN), app=fly_api.app, image="worker:1", api_base_url=fly_api.url, request_timeout_s=5
    )
    provider = FlyProvider(config, limiter=unlimited(), retry=FAST_RETRY)
    try:
        reconciler = Reconciler(store, provider, POLICY, spec_for, lock_ttl_s=0.6, find_interval_s=0.05)
        await enqueue(store, "a")
        fly_api.timeout_next("create", delay_s=1.5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(reconciler.tick)
            await anyio.sleep(1.0)
            assert not await store.acquire_reconcile_lock("cron", 60_000)  # renewed while the tick runs
        assert await store.acquire_reconcile_lock("cron", 60_000)  # released when it ended
        await store.release_reconcile_lock("cron")
        assert len(fly_api.live()) == 1

        # Taken over mid-tick (say the lock store lost it): the tick stops instead of running on unguarded.
        await enqueue(store, "b")
        fly_api.timeout_next("create", delay_s=1.5)
        async with anyio.create_task_group() as tg:

            async def steal() -> None:
                await anyio.sleep(0.1)
                await store.release_reconcile_lock(reconciler.holder)
                assert await store.acquire_reconcile_lock("intruder", 60_000)

            tg.start_soon(steal)
            with pytest.raises(ReconcileLockLost):
                await reconciler.tick()
    finally:
        await provider.aclose()


async def test_a_drained_machine_is_parked_and_started_again_instead_of_a_create(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    config = FlyConfig(
        api_token=SecretStr(FLY_TOKEN), app=fly_api.app, image="worker:1", api_base_url=fly_api.url, keep_stopped=True
    )
    provider = FlyProvider(config, limiter=unlimited(), retry=FAST_RETRY)
    # Pool mode: its launches are unpinned (an affinity launch is pinned to its conversation and
    # so is not parked for others).
    policy = POLICY.model_copy(update={"mode": "pool", "pool_size": 1, "pool_prefill": False, "keep_warm_workers": 0})
    try:
        reconciler = Reconciler(store, provider, policy, spec_for, find_interval_s=0.05)
        for boot, conversation in enumerate(("a", "b")):
            await enqueue(store, conversation)
            up = await reconciler.tick()
            assert [a.action for a in up.plan.actions] == (["launch"] if boot == 0 else ["start"]), up.plan.actions
            (machine,) = await provider.list()
            # The machine's next boot registers a worker of its own (the image adds a per-boot suffix).
            worker_id = f"{machine.worker_id}-boot{boot}"
            await store.worker_register(
                WorkerRegistration(
                    worker_id=worker_id,
                    provider="fly",
                    launch_id=machine.launch_id,
                    machine_ref=MachineRef(machine_id=machine.machine_id),
                )
            )
            job = await store.worker_claim(worker_id)
            assert job is not None and job.conversation_id == conversation
            assert (
                await store.worker_complete(
                    LeaseRef(worker_id=worker_id, message_id=job.message_id, lease_id=job.lease_id)
                )
            ).ok
            assert [a.action for a in (await reconciler.tick()).plan.actions] == ["drain"]
            await _exit(store, worker_id)  # the drained worker says it exited; its machine is stopping
            assert (await reconciler.tick()).plan.empty  # kept for the pool: left to stop
            fly_api.exit_worker(machine.machine_id)  # stopped
            parked = await reconciler.tick()
            assert [a.action for a in parked.plan.actions] == ["park"] and not parked.errors
            assert [r.state for r in await store.ledger_list()] == ["parked"]
            assert (await reconciler.tick()).plan.empty
        assert fly_api.count("create") == 1 and fly_api.count("start") == 1
        assert [m["state"] for m in fly_api.live()] == ["stopped"]
    finally:
        await provider.aclose()


async def test_a_pool_machine_is_started_told_its_conversation_and_parked_free_again(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    """``pin_pool_starts``: the pool's machine boots pinned to the conversation it was started for
    (so it restores that conversation's memory), and is given the pool's environment back when it
    is parked, so the next start that names none boots it free to take any."""
    config = FlyConfig(
        api_token=SecretStr(FLY_TOKEN), app=fly_api.app, image="worker:1", api_base_url=fly_api.url, keep_stopped=True
    )
    provider = FlyProvider(config, limiter=unlimited(), retry=FAST_RETRY)
    policy = POLICY.model_copy(update={"pool_size": 1, "sticky_workers": True, "pin_pool_starts": True})
    try:
        reconciler = Reconciler(store, provider, policy, spec_for, find_interval_s=0.05)
        filled = await reconciler.tick()  # nothing queued: the pool is filled, created stopped
        assert [(a.action, getattr(a, "parked", None)) for a in filled.plan.actions] == [("launch", True)]
        (member,) = await provider.list()
        free = fly_api.machine_env(member.machine_id)
        assert "FACTORY_CONVERSATION" not in free and free["FACTORY_STICKY"] == "True"

        await enqueue(store, "a")
        started = await reconciler.tick()
        (start,) = started.plan.actions
        assert isinstance(start, Start) and start.conversation_id == "a" and not started.errors
        assert fly_api.machine_env(member.machine_id)["FACTORY_CONVERSATION"] == "a"
        assert (fly_api.count("create"), fly_api.count("update"), fly_api.count("start")) == (1, 1, 1)
        workers = Workers(store, provider)
        assert len(await workers.boot(pin="a")) == 1 and len(workers.leases) == 1
        await workers.finish_all()

        assert [a.action for a in (await reconciler.tick()).plan.actions] == ["drain"]
        fly_api.exit_worker(member.machine_id)  # the drained worker exits; the machine stops
        parked = await reconciler.tick()
        assert [a.action for a in parked.plan.actions] == ["park"] and not parked.errors
        assert fly_api.machine_env(member.machine_id) == free
        assert [r.state for r in await store.ledger_list()] == ["parked"]
        assert (await reconciler.tick()).plan.empty
    finally:
        await provider.aclose()


async def test_a_pool_machine_left_told_a_conversation_by_a_failed_start_boots_free_when_started_for_none(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    """A start that failed after its update leaves the stopped machine's config naming that
    conversation. A later start that names none (here: the operator turned ``pin_pool_starts`` off)
    gives it the pool's environment first, so it does not boot pinned to a conversation nobody
    asked it for."""
    config = FlyConfig(
        api_token=SecretStr(FLY_TOKEN), app=fly_api.app, image="worker:1", api_base_url=fly_api.url, keep_stopped=True
    )
    provider = FlyProvider(config, limiter=unlimited(), retry=FAST_RETRY)
    pinning = POLICY.model_copy(update={"pool_size": 1, "sticky_workers": True, "pin_pool_starts": True})
    try:
        await Reconciler(store, provider, pinning, spec_for, find_interval_s=0.05).tick()
        (member,) = await provider.list()
        free = fly_api.machine_env(member.machine_id)

        await enqueue(store, "a")
        fly_api.fail_next("start", status=500)
        failed = await Reconciler(store, provider, pinning, spec_for, find_interval_s=0.05).tick()
        assert [a.action for a in failed.plan.actions] == ["start"] and failed.errors
        assert fly_api.machine_env(member.machine_id)["FACTORY_CONVERSATION"] == "a"
        assert [m.conversation_id for m in await provider.list()] == ["a"]
        assert [(r.state, r.conversation_id) for r in await store.ledger_list()] == [("parked", None)]

        unpinned = POLICY.model_copy(update={"pool_size": 1, "sticky_workers": True})
        started = await Reconciler(store, provider, unpinned, spec_for, find_interval_s=0.05).tick()
        (start,) = started.plan.actions
        assert isinstance(start, Start) and start.conversation_id is None and not started.errors
        assert fly_api.machine_env(member.machine_id) == free
        assert [m.conversation_id for m in await provider.list()] == [None]
        assert fly_api.count("update") == 2  # told "a", then given the pool's environment back
    finally:
        await provider.aclose()


async def test_an_idle_worker_is_suspended_and_resumed_when_its_conversation_has_work(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    provider = fly_provider(fly_api)
    policy = POLICY.model_copy(update={"suspend_idle": True})
    try:
        reconciler = Reconciler(store, provider, policy, spec_for, find_interval_s=0.05)
        workers = Workers(store, provider)
        await enqueue(store, "a")
        assert len(ids(await reconciler.tick(), Launch)) == 1
        (machine,) = await workers.boot()
        instance = fly_api.machines[machine.machine_id]["instance_id"]
        await workers.finish_all()
        asleep = await reconciler.tick()
        assert [a.action for a in asleep.plan.actions] == ["suspend"] and not asleep.errors
        assert [m.state for m in await provider.list()] == ["suspended"]
        assert (await reconciler.tick()).plan.empty  # suspended: neither capacity nor gone

        await enqueue(store, "a")
        woken = await reconciler.tick()
        assert [a.action for a in woken.plan.actions] == ["resume"] and not woken.errors
        assert [m.state for m in await provider.list()] == ["running"]
        # The same instance: the worker process carries on (the fake keeps it; a boot would not).
        assert fly_api.machines[machine.machine_id]["instance_id"] == instance
        assert fly_api.count("create") == 1 and fly_api.count("start") == 1
        job = await store.worker_claim(str(machine.worker_id))
        assert job is not None and job.conversation_id == "a"
    finally:
        await provider.aclose()


async def test_a_pinned_sleeper_past_its_keep_is_resumed_and_drained_so_it_snapshots(
    store: SqliteStore, fly_api: FakeFlyApi
) -> None:
    """Destroying a suspended machine would take every turn since its boot with it (its worker
    snapshots only as it exits): past ``suspend_keep_s`` it is resumed and drained instead, and
    destroyed once its worker has exited."""
    provider = fly_provider(fly_api)
    policy = POLICY.model_copy(update={"suspend_idle": True, "suspend_keep_s": 1})
    try:
        reconciler = Reconciler(store, provider, policy, spec_for, find_interval_s=0.05)
        workers = Workers(store, provider)
        await enqueue(store, "a")
        await reconciler.tick()
        (machine,) = await workers.boot(pin="a")
        await workers.finish_all()
        asleep = await reconciler.tick()
        assert [a.action for a in asleep.plan.actions] == ["suspend"] and not asleep.errors
        await anyio.sleep(2.1)  # idle past the window and the 1 s keep (counted in whole seconds)
        retire = await reconciler.tick()
        assert sorted(a.action for a in retire.plan.actions) == ["drain", "resume"] and not retire.errors
        assert [m.state for m in await provider.list()] == ["running"]
        assert fly_api.count("delete") == 0
        (record,) = await store.list_workers()
        assert record.status == "draining"
        assert (await reconciler.tick()).plan.of(Destroy) == []  # resumed and draining: left to exit
        await provider.stop(machine)  # the worker snapshots, exits, and its machine stops
        gone = await reconciler.tick()
        assert [a.action for a in gone.plan.actions] == ["destroy"] and not gone.errors
    finally:
        await provider.aclose()


def test_a_watch_looks_again_soon_after_failed_ticks_backing_off_to_its_interval() -> None:
    assert next_tick_in_s(120, None, 0) == 120
    assert next_tick_in_s(120, 5.0, 0) == 5.0  # the plan asked to look again sooner
    assert [next_tick_in_s(120, None, n) for n in (1, 2, 3, 6, 7, 1000)] == [2, 4, 8, 64, 120, 120]
    assert next_tick_in_s(120, 1.0, 3) == 1.0
