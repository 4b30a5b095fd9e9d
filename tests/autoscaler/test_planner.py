"""The pure planner: examples for each rule, and Hypothesis properties over simulated fleets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.plan import (
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
from autoscaler.planner import plan
from autoscaler.policy import ScalingPolicy
from autoscaler.provider import Machine
from autoscaler.simulate import SimMessage, World, ideal
from contracts.errors import InvalidInput
from contracts.models import DemandSnapshot, LaunchRecord, RecentConversation, WorkerView
from factory.fleet import scaling_policy
from factory.settings import ScaleSettings

MIN = 60_000
HOUR_MS = 3_600_000


def replan(world: World, policy: ScalingPolicy) -> Plan:
    return plan(world.demand(), world.fleet(), world.open_launches(), policy, world.now_ms)


def busy_world(conversations: int, *, boot_s: float = 10) -> World:
    """A world whose conversations each hold a message that takes an hour: demand stays put."""
    world = World(profile=ideal(boot_s))
    for c in range(conversations):
        world.arrive(SimMessage(f"c{c}", 0, HOUR_MS))
    return world


def tick(world: World, policy: ScalingPolicy, dt_ms: int = 15_000) -> Plan:
    p = replan(world, policy)
    world.apply(p.actions)
    world.step(dt_ms)
    return p


def settle(world: World, policy: ScalingPolicy, ticks: int = 40) -> None:
    """Run ticks until the world stops changing: three empty plans in a row."""
    quiet = 0
    for _ in range(ticks):
        quiet = quiet + 1 if tick(world, policy).empty else 0
        if quiet == 3:
            return
    raise AssertionError(f"the fleet did not settle within {ticks} ticks")


def live(world: World) -> int:
    return sum(1 for w in world.workers.values() if w.status == "active" and w.machine_id in world.machines)


# --------------------------------------------------------------------------- examples


def test_a_quiet_empty_fleet_needs_nothing() -> None:
    assert replan(World(profile=ideal()), ScalingPolicy()).empty


def test_affinity_launches_one_worker_per_active_conversation() -> None:
    p = replan(busy_world(3), ScalingPolicy(mode="affinity"))
    assert len(p.of(Launch)) == 3 and p.desired == 3
    assert "3 ready" in p.of(Launch)[0].reason


def test_pool_mode_packs_conversations_per_worker() -> None:
    p = replan(busy_world(9), ScalingPolicy(mode="pool", conversations_per_worker=4))
    assert len(p.of(Launch)) == 3


def test_scale_up_asks_for_all_it_needs_within_max_and_budget() -> None:
    assert len(replan(busy_world(20), ScalingPolicy(max_workers=50)).of(Launch)) == 20
    assert len(replan(busy_world(20), ScalingPolicy(max_step=4, max_workers=50)).of(Launch)) == 4
    assert len(replan(busy_world(20), ScalingPolicy(max_workers=6)).of(Launch)) == 6
    assert len(replan(busy_world(20), ScalingPolicy(max_workers=50, budget_machines=5)).of(Launch)) == 5


def test_min_workers_are_kept_without_demand() -> None:
    world = World(profile=ideal())
    policy = ScalingPolicy(min_workers=2)
    assert len(replan(world, policy).of(Launch)) == 2
    settle(world, policy)
    assert live(world) == 2


def test_launches_in_flight_count_as_capacity() -> None:
    world = busy_world(3, boot_s=60)
    policy = ScalingPolicy()
    world.apply(replan(world, policy).actions)
    world.step(15_000)  # still booting: no worker registered yet
    assert replan(world, policy).empty


def test_idle_workers_are_drained_only_after_the_window_and_busy_ones_never() -> None:
    world = World(profile=ideal(5))
    world.arrive(SimMessage("a", 0, 30_000))
    world.arrive(SimMessage("b", 0, HOUR_MS))
    policy = ScalingPolicy(scale_down_window_s=120)
    settle(world, policy)
    assert live(world) == 2
    world.step(60_000)  # "a" finished within the window; "b" still running
    waiting = replan(world, policy)
    assert waiting.of(Drain) == []
    # A watching reconciler looks again when the window ends, not a whole interval later.
    (idle,) = [w for w in world.demand().workers if not w.busy]
    assert idle.idle_since is not None
    assert waiting.recheck_in_s == (idle.idle_since + 120_000 - world.now_ms) / 1000
    world.step(120_000)
    drains = replan(world, policy).of(Drain)
    assert len(drains) == 1
    drained = world.workers[drains[0].worker_id]  # type: ignore[attr-defined]
    assert drained.busy_conversation is None
    assert replan(world, ScalingPolicy(scale_down_window_s=0)).recheck_in_s is None  # nothing to wait for


def test_a_launch_without_a_worker_is_looked_at_again_as_its_hedge_passes() -> None:
    # A boot that fails silently: the machine runs, its worker never registers.
    world = World(profile=ideal(5, boot_fail_p=1.0))
    world.arrive(SimMessage("a", 0, HOUR_MS))
    policy = ScalingPolicy(launch_hedge_s=30, scale_down_window_s=0)
    assert len(tick(world, policy, 10_000).of(Launch)) == 1
    waiting = replan(world, policy)
    assert waiting.empty
    # The watch looks again just past the hedge, not a whole interval later…
    recheck_s = waiting.recheck_in_s
    assert recheck_s is not None and recheck_s == pytest.approx(20.1)
    world.step(round(recheck_s * 1000))
    # …when another machine is launched beside the silent one.
    assert len(replan(world, policy).of(Launch)) == 1


def test_a_drained_worker_is_destroyed_once_it_has_exited() -> None:
    world = World(profile=ideal(5))
    world.arrive(SimMessage("a", 0, 1_000))
    policy = ScalingPolicy(scale_down_window_s=0)
    settle(world, policy)
    assert world.machines == {} and world.done == 1
    assert all(w.status == "stopped" for w in world.workers.values())
    assert world.open_launches() == []


def _view(worker_id: str, **kw: object) -> WorkerView:
    return WorkerView.model_validate(
        {"worker_id": worker_id, "provider": "fly", "status": "active", "heartbeat_age_ms": 0, "busy": False, **kw}
    )


def _demand(*workers: WorkerView, ready: int = 0, inflight: int = 0, now: int = 10 * HOUR_MS) -> DemandSnapshot:
    return DemandSnapshot(
        now=now,
        ready_conversations=ready,
        inflight_conversations=inflight,
        retrying_conversations=0,
        scheduled_conversations=0,
        workers=list(workers),
    )


def _machine(machine_id: str, launch_id: str | None, state: str = "running", created: int = 0) -> Machine:
    return Machine.model_validate(
        {"machine_id": machine_id, "provider": "fly", "state": state, "launch_id": launch_id, "created_at_ms": created}
    )


def test_gone_and_stuck_workers_are_cleaned_up_but_busy_ones_wait() -> None:
    now = 10 * HOUR_MS
    policy = ScalingPolicy()
    workers = [
        _view("stale", launch_id="L1", heartbeat_age_ms=10 * MIN, idle_since=0),
        _view("ghost", heartbeat_age_ms=10 * MIN, idle_since=0),
        _view("stuck", launch_id="L3", status="draining", status_since=now - 20 * MIN, idle_since=0),
        _view("busy-drain", launch_id="L4", status="draining", status_since=now - 20 * MIN, busy=True),
        _view("exited", launch_id="L5", status="draining", status_since=now - MIN, idle_since=0),
    ]
    fleet = [_machine("m1", "L1"), _machine("m3", "L3"), _machine("m4", "L4"), _machine("m5", "L5", "stopped")]
    p = plan(_demand(*workers, inflight=1, now=now), fleet, [], policy, now)
    destroyed = {a.machine_id for a in p.of(Destroy)}  # type: ignore[attr-defined]
    assert destroyed == {"m1", "m3", "m5"}
    assert [a.worker_id for a in p.of(RetireWorker)] == ["ghost"]  # type: ignore[attr-defined]


def test_launch_ledger_rules() -> None:
    now = 10 * HOUR_MS
    policy = ScalingPolicy(launch_timeout_s=300)
    ledger = [
        LaunchRecord(launch_id="young", provider="fly", requested_at=now - MIN),
        LaunchRecord(launch_id="lost", provider="fly", requested_at=now - 10 * MIN),
        LaunchRecord(launch_id="dead", provider="fly", requested_at=now - 10 * MIN, state="running", machine_id="m9"),
        LaunchRecord(launch_id="booted-no-worker", provider="fly", requested_at=now - 10 * MIN, state="running"),
    ]
    fleet = [_machine("mb", "booted-no-worker")]
    p = plan(_demand(now=now, ready=1), fleet, ledger, policy, now)
    assert [a.launch_id for a in p.of(ResolveLaunch)] == ["lost"]  # type: ignore[attr-defined]
    assert [a.launch_id for a in p.of(CloseLaunch)] == ["dead"]  # type: ignore[attr-defined]
    assert [a.machine_id for a in p.of(Destroy)] == ["mb"]  # type: ignore[attr-defined]
    assert p.launching == 1 and p.of(Launch) == []  # the young launch covers the one ready conversation


def test_affinity_launches_are_pinned_to_uncovered_ready_conversations() -> None:
    now = 10 * HOUR_MS
    workers = [
        _view("pinned-a", launch_id="La", pinned=True, conversation_id="a", idle_since=now),
        _view("drain-b", launch_id="Lb", pinned=True, conversation_id="b", status="draining", status_since=now),
        _view("free", launch_id="Lf", idle_since=now),  # unpinned: takes any one conversation
    ]
    fleet = [_machine("ma", "La"), _machine("mb", "Lb"), _machine("mf", "Lf")]
    ledger = [LaunchRecord(launch_id="Lc", provider="fly", requested_at=now - MIN, conversation_id="c")]
    demand = _demand(*workers, ready=5, now=now).model_copy(
        update={"ready_conversation_ids": ["a", "b", "c", "d", "e"]}
    )
    p = plan(demand, fleet, ledger, ScalingPolicy(), now)
    # a is covered by its worker, b by its draining one (its snapshot is what b's next machine
    # restores), c by a launch on its way; the free worker takes d; e gets a launch of its own.
    assert [a.conversation_id for a in p.of(Launch)] == ["e"]  # type: ignore[attr-defined]


def test_a_pinned_idle_worker_with_work_waiting_is_never_drained() -> None:
    now = 10 * HOUR_MS
    workers = [
        _view("busy-soon", launch_id="L1", pinned=True, conversation_id="a", idle_since=0),
        _view("idle", launch_id="L2", pinned=True, conversation_id="z", idle_since=0),
    ]
    demand = _demand(*workers, ready=1, now=now).model_copy(update={"ready_conversation_ids": ["a"]})
    p = plan(demand, [_machine("m1", "L1"), _machine("m2", "L2")], [], ScalingPolicy(scale_down_window_s=60), now)
    assert [d.worker_id for d in p.of(Drain)] == ["idle"]  # type: ignore[attr-defined]
    assert p.of(Launch) == []


def test_a_draining_worker_uploading_its_snapshot_is_not_destroyed_until_the_deadline() -> None:
    now = 10 * HOUR_MS
    policy = ScalingPolicy(drain_deadline_s=600)
    uploading = _view(
        "up",
        launch_id="L1",
        status="draining",
        status_since=now - MIN,
        heartbeat_age_ms=20 * MIN,
        snapshot_pending=True,
    )
    assert plan(_demand(uploading, now=now), [_machine("m1", "L1")], [], policy, now).of(Destroy) == []
    late = uploading.model_copy(update={"status_since": now - 20 * MIN})
    assert len(plan(_demand(late, now=now), [_machine("m1", "L1")], [], policy, now).of(Destroy)) == 1


def test_orphans_are_collected_after_the_grace_period() -> None:
    now = 10 * HOUR_MS
    fleet = [_machine("old", None, created=now - 20 * MIN), _machine("new", "Lx", created=now - MIN)]
    p = plan(_demand(now=now), fleet, [], ScalingPolicy(orphan_grace_s=600), now)
    assert [a.machine_id for a in p.of(CollectOrphan)] == ["old"]  # type: ignore[attr-defined]


def test_policy_validation_names_the_problem() -> None:
    with pytest.raises(ValueError, match="min_workers"):
        ScalingPolicy(min_workers=3, max_workers=2)
    with pytest.raises(ValueError, match="churn"):
        ScalingPolicy(min_workers=1, idle_timeout_s=60)


def test_a_busy_worker_that_does_not_report_its_launch_keeps_its_machine() -> None:
    # Matched to its machine by machine id: its launch is not mistaken for one that never registered.
    now = 10 * HOUR_MS
    worker = _view("w1", busy=True, machine_ref={"machine_id": "m1"})
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    p = plan(_demand(worker, inflight=1, now=now), [_machine("m1", "L1")], ledger, ScalingPolicy(), now)
    assert p.empty and p.current == 1


def test_a_retired_worker_takes_its_launch_with_it() -> None:
    now = 10 * HOUR_MS
    worker = _view("w1", launch_id="L1", heartbeat_age_ms=10 * MIN, idle_since=0)
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    (retire,) = plan(_demand(worker, now=now), [], ledger, ScalingPolicy(), now).actions
    assert isinstance(retire, RetireWorker) and retire.launch_id == "L1"


def _pool_world(pool_size: int) -> tuple[World, ScalingPolicy]:
    world = World(profile=ideal(20, start_s=(1.0, 1.0)), auto_destroy=False)
    # Pool mode: its launches are unpinned, so a drained machine can be parked and started for anyone.
    policy = ScalingPolicy(mode="pool", pool_size=pool_size, scale_down_window_s=0, keep_warm_workers=0)
    return world, policy


def test_drained_machines_are_parked_while_the_pool_has_room_and_started_first() -> None:
    world, policy = _pool_world(pool_size=2)
    for c in ("a", "b", "c"):
        world.arrive(SimMessage(c, 0, 1_000))
    settle(world, policy)
    assert world.done == 3 and world.parked() == 2 and len(world.machines) == 2  # the third was destroyed
    assert all(m.state == "stopped" for m in world.machines.values())
    world.arrive(SimMessage("d", world.now_ms, 1_000))
    p = replan(world, policy)
    # Started, not created; not refilled either: the started machine returns to the pool when done.
    assert len(p.of(Start)) == 1 and p.of(Launch) == []
    world.apply(p.actions)
    world.step(1_000)  # a start takes a second here, not the 20 s of a create
    assert world.inflight() == {"d"}


def test_a_machine_pinned_to_a_conversation_is_not_parked_for_others() -> None:
    # Affinity launches are pinned: started again, such a machine would serve only its old
    # conversation, so it is destroyed once drained; the pool is left for unpinned machines.
    world = World(profile=ideal(20, start_s=(1.0, 1.0)), auto_destroy=False)
    policy = ScalingPolicy(pool_size=2, pool_prefill=False, scale_down_window_s=0, keep_warm_workers=0)
    for c in ("a", "b"):
        world.arrive(SimMessage(c, 0, 1_000))
    settle(world, policy)
    assert world.done == 2 and world.parked() == 0 and not world.machines


def _returning_to_the_pool(pin_pool_starts: bool) -> World:
    """Affinity on a pool of one (Fly's shape): a conversation is served, its worker drained and
    its machine parked; then the conversation comes back and the pool's machine is started for it."""
    world = World(profile=ideal(20, start_s=(1.0, 1.0)), auto_destroy=False)
    policy = ScalingPolicy(
        pool_size=1, sticky_workers=True, pin_pool_starts=pin_pool_starts, scale_down_window_s=0, keep_warm_workers=0
    )
    settle(world, policy)  # the pool's machine, created stopped
    for turn in range(2):
        world.arrive(SimMessage("a", world.now_ms, 1_000))
        started = replan(world, policy)
        (start,) = started.of(Start)
        assert start.conversation_id == ("a" if pin_pool_starts else None)  # type: ignore[attr-defined]
        assert started.of(Launch) == []
        settle(world, policy)
        assert world.done == turn + 1 and world.parked() == 1
    return world


def test_a_pool_start_told_its_conversation_restores_its_memory() -> None:
    # Unpinned, the returning turn's worker has only the stored history (its sticky worker does not
    # pin itself to a conversation whose memory is in a snapshot); told the conversation, its boot
    # restores the snapshot the first worker took as it exited.
    assert (_returning_to_the_pool(pin_pool_starts=False).forgot, _returning_to_the_pool(True).forgot) == (1, 0)
    world = _returning_to_the_pool(pin_pool_starts=True)
    assert world.returning == 1 and [w.pinned for w in world.workers.values()] == ["a", "a"]


def test_a_pool_start_told_its_conversation_is_not_capacity_for_another() -> None:
    # A pool machine started told "a" is booting, and "a"'s message went to another worker
    # meanwhile. The ledger keeps the pool's launch unpinned, but the machine's list entry names
    # "a": it is not free capacity for "b", which gets a machine of its own at once.
    now = 10 * HOUR_MS
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, updated_at=now - 5_000, state="running")]
    booting = Machine(machine_id="m1", provider="fly", state="starting", launch_id="L1", conversation_id="a")
    demand = _demand(ready=1, now=now).model_copy(update={"ready_conversation_ids": ["b"]})
    p = plan(demand, [booting], ledger, ScalingPolicy(), now)
    assert [a.conversation_id for a in p.of(Launch)] == ["b"]  # type: ignore[attr-defined]
    # Told nothing, the same machine would take "b" as it comes up: nothing is launched.
    unpinned = booting.model_copy(update={"conversation_id": None})
    assert plan(demand, [unpinned], ledger, ScalingPolicy(), now).of(Launch) == []


def test_the_pool_is_filled_with_machines_created_stopped() -> None:
    world, policy = _pool_world(pool_size=3)
    p = replan(world, policy)
    assert [a.parked for a in p.of(Launch)] == [True, True, True]  # type: ignore[attr-defined]
    world.apply(p.actions)
    assert world.parked() == 3 and replan(world, policy).empty
    assert all(not m.booted for m in world.machines.values())


def test_a_pool_sized_to_recent_demand_keeps_its_minimum_when_quiet_and_gives_back_the_surplus() -> None:
    world, _ = _pool_world(pool_size=4)
    policy = ScalingPolicy(
        mode="pool", pool_size=4, pool_hold_s=900, pool_min=1, scale_down_window_s=0, keep_warm_workers=0
    )
    quiet = replan(world, policy)
    assert [a.parked for a in quiet.of(Launch)] == [True]  # type: ignore[attr-defined]
    world.apply(quiet.actions)
    for c in ("a", "b", "c"):
        world.arrive(SimMessage(c, world.now_ms, 1_000))
    settle(world, policy)
    assert world.done == 3 and world.parked() == 3  # three conversations within the hold: three parked
    world.step(900_000)  # quiet for longer than the hold
    shrink = replan(world, policy)
    assert len(shrink.of(Destroy)) == 2 and shrink.parked == 1 and shrink.of(Launch) == []
    world.apply(shrink.actions)
    assert world.parked() == 1 and replan(world, policy).empty


def test_an_unpinned_suspended_worker_outlives_suspend_keep_s_in_the_pools_place() -> None:
    def quiet_for_ten_minutes(pool_size: int) -> tuple[World, ScalingPolicy, Plan]:
        policy = ScalingPolicy(
            mode="pool",
            pool_size=pool_size,
            pool_prefill=False,
            suspend_idle=True,
            suspend_keep_s=300,
            scale_down_window_s=0,
            keep_warm_workers=0,
        )
        world = World(profile=ideal(20, ready_s=(5.0, 5.0)), auto_destroy=False)
        world.arrive(SimMessage("a", 0, 10_000))
        for _ in range(5):
            tick(world, policy, 10_000)
        assert [m.state for m in world.machines.values()] == ["suspended"]
        world.step(600_000)
        return world, policy, replan(world, policy)

    # No pool: past suspend_keep_s its machine goes.
    assert len(quiet_for_ten_minutes(0)[2].of(Destroy)) == 1
    # A pool of one: it is kept in the pool's place (both bill as stopped; it resumes with its
    # gateway running), and the pool is not filled beside it.
    world, policy, held = quiet_for_ten_minutes(1)
    assert held.empty
    world.arrive(SimMessage("b", world.now_ms, 10_000))
    resume = replan(world, policy)
    assert len(resume.of(Resume)) == 1 and resume.of(Start) == [] and resume.of(Launch) == []


def test_keep_warm_holds_a_worker_for_conversations_expected_back() -> None:
    policy = ScalingPolicy(scale_down_window_s=30, keep_warm_workers=3, keep_warm_gap_factor=1.5)
    world = World(profile=ideal(5))
    world.launch()
    world.step(5_000)
    # Two conversations a few minutes apart each: one warm worker serves both (pooled), past the window.
    for _ in range(4):
        world.arrive(SimMessage("a", world.now_ms, 1_000))
        world.step(90_000)
        world.arrive(SimMessage("b", world.now_ms, 1_000))
        world.step(90_000)
    p = replan(world, policy)
    assert p.desired == 1 and p.of(Drain) == [] and "kept warm" in p.summary
    # Silent for longer than 1.5 times their gap (180 s): no longer expected back.
    world.step(300_000)
    assert len(replan(world, policy).of(Drain)) == 1


def test_keep_warm_is_bounded_by_its_budget_and_off_at_zero() -> None:
    now = 10 * HOUR_MS
    chatty = [
        RecentConversation(conversation_id=f"c{c}", last_arrival_at=now - 1_000, gaps_ms=[2_000, 3_000])
        for c in range(10)
    ]
    demand = _demand(now=now).model_copy(update={"recent": chatty})
    assert plan(demand, [], [], ScalingPolicy(keep_warm_workers=20, cold_start_s=60), now).desired == 10
    assert plan(demand, [], [], ScalingPolicy(keep_warm_workers=2, cold_start_s=60), now).desired == 2
    assert plan(demand, [], [], ScalingPolicy(keep_warm_workers=0), now).desired == 0
    # One arrival only: no gap to go by, not expected back.
    once = [RecentConversation(conversation_id="x", last_arrival_at=now - 1_000)]
    assert plan(demand.model_copy(update={"recent": once}), [], [], ScalingPolicy(), now).desired == 0


def test_more_conversations_than_the_budget_share_unpinned_workers_and_all_get_served() -> None:
    # A herd of 12 one-message conversations against a budget of 3 machines: pinned launches would
    # leave 9 waiting for machines that never exit (an idle pinned worker is not excess while its
    # conversation's peers wait), so the launches are unpinned and serve them in turn.
    policy = ScalingPolicy(budget_machines=3, scale_down_window_s=0)
    world = World(profile=ideal(5), pinned=False)
    for c in range(12):
        world.arrive(SimMessage(f"c{c:02d}", 0, 10_000))
    first = replan(world, policy)
    assert [a.conversation_id for a in first.of(Launch)] == [None, None, None]  # type: ignore[attr-defined]
    assert "9 conversation(s) beyond the budget" in first.summary
    for _ in range(20):
        tick(world, policy, 5_000)
    assert world.done == 12


def test_sticky_launches_keep_a_conversations_memory_but_never_the_ones_that_serve_a_herd_in_turn() -> None:
    """With ``sticky_workers`` an unpinned launch (a spare, a pool member) pins itself to the first
    conversation it takes, so that conversation's turns stay where its memory is; the launches that
    serve conversations beyond the budget in turn must not, or each would serve one and idle."""
    sticky = ScalingPolicy(sticky_workers=True, spare_workers=1, spare_min_arrivals=1, scale_down_window_s=30)
    world = World(profile=ideal(5))
    world.arrive(SimMessage("a", 0, 1_000))
    launches = replan(world, sticky).of(Launch)
    assert [(a.conversation_id, a.sticky) for a in launches] == [("a", True), (None, True)]  # type: ignore[attr-defined]
    for _ in range(4):
        tick(world, sticky, 5_000)
    spare = next(w for w in world.workers.values() if w.pinned is None)
    world.arrive(SimMessage("b", world.now_ms, 1_000))
    world.step(2_000)
    assert spare.pinned == "b"  # it took b first: b's from now on, as the planner sees it
    assert next(v for v in world.demand().workers if v.worker_id == spare.worker_id).pinned

    herd = World(profile=ideal(5))
    for c in range(6):
        herd.arrive(SimMessage(f"c{c}", 0, 10_000))
    short = replan(herd, sticky.model_copy(update={"budget_machines": 2, "spare_workers": 0}))
    assert [(a.conversation_id, a.sticky) for a in short.of(Launch)] == [(None, False)] * 2  # type: ignore[attr-defined]
    pooled = replan(herd, sticky.model_copy(update={"mode": "pool"}))
    assert {a.sticky for a in pooled.of(Launch)} == {False}  # type: ignore[attr-defined]


def test_an_idle_pinned_worker_gives_its_machine_back_when_the_budget_is_full() -> None:
    now = 10 * HOUR_MS
    workers = [
        _view("idle-a", launch_id="La", pinned=True, conversation_id="a", idle_since=now - MIN),
        _view("busy-b", launch_id="Lb", pinned=True, conversation_id="b", busy=True),
    ]
    fleet = [_machine("ma", "La"), _machine("mb", "Lb")]
    demand = _demand(*workers, ready=1, inflight=1, now=now).model_copy(update={"ready_conversation_ids": ["c"]})
    p = plan(demand, fleet, [], ScalingPolicy(budget_machines=2, scale_down_window_s=30), now)
    assert [d.worker_id for d in p.of(Drain)] == ["idle-a"]  # type: ignore[attr-defined]
    assert p.of(Launch) == []  # its machine is still there; the next tick launches once it is gone
    # With room in the budget, the idle pinned worker stays: c gets a machine of its own.
    p = plan(demand, fleet, [], ScalingPolicy(budget_machines=3, scale_down_window_s=30), now)
    assert p.of(Drain) == [] and [a.conversation_id for a in p.of(Launch)] == ["c"]  # type: ignore[attr-defined]


def test_an_idle_pinned_worker_is_kept_while_its_own_conversation_is_expected_back() -> None:
    # Pinned workers serve no one else, so keep-warm for them is per conversation: "a" writes every
    # two minutes and was last heard from a minute ago; "z" has been silent for an hour.
    now = 10 * HOUR_MS
    workers = [
        _view("wa", launch_id="La", pinned=True, conversation_id="a", idle_since=now - 50_000),
        _view("wz", launch_id="Lz", pinned=True, conversation_id="z", idle_since=now - HOUR_MS),
    ]
    recent = [
        RecentConversation(conversation_id="a", last_arrival_at=now - MIN, gaps_ms=[2 * MIN, 2 * MIN]),
        RecentConversation(conversation_id="z", last_arrival_at=now - HOUR_MS, gaps_ms=[2 * MIN]),
    ]
    demand = _demand(*workers, now=now).model_copy(update={"recent": recent})
    fleet = [_machine("ma", "La"), _machine("mz", "Lz")]
    p = plan(demand, fleet, [], ScalingPolicy(scale_down_window_s=30, keep_warm_workers=5), now)
    assert [d.worker_id for d in p.of(Drain)] == ["wz"]  # type: ignore[attr-defined]
    # Keep-warm off: both go once past the window.
    p = plan(demand, fleet, [], ScalingPolicy(scale_down_window_s=30, keep_warm_workers=0), now)
    assert sorted(d.worker_id for d in p.of(Drain)) == ["wa", "wz"]  # type: ignore[attr-defined]


def test_an_idle_worker_is_suspended_then_resumed_with_its_gateway_running_when_its_conversation_returns() -> None:
    policy = ScalingPolicy(scale_down_window_s=0, suspend_idle=True, suspend_keep_s=900)
    world = World(profile=ideal(20, ready_s=(5.0, 5.0)))  # a cold start: 20 s boot + 5 s gateway
    world.arrive(SimMessage("a", 0, 10_000))
    plans = [tick(world, policy, 10_000) for _ in range(5)]
    assert [a.conversation_id for a in plans[0].of(Launch)] == ["a"]  # type: ignore[attr-defined]
    assert len(plans[-1].of(Suspend)) == 1 and plans[-1].of(Drain) == []
    (machine,) = world.machines.values()
    assert machine.state == "suspended"
    # Back after ten minutes, past the heartbeat's staleness: resumed, not written off.
    world.step(600_000 - world.now_ms)
    world.arrive(SimMessage("a", world.now_ms, 10_000))
    resume = replan(world, policy)
    assert len(resume.of(Resume)) == 1 and resume.of(Launch) == [] and resume.of(Destroy) == []
    world.apply(resume.actions)
    assert replan(world, policy).of(Destroy) == []  # frozen, not gone: its heartbeat comes back with it
    world.step(2_000)
    assert world.waits_ms[-1] == 1_000  # the start only: the gateway was already running
    # Quiet for longer than suspend_keep_s: resumed to drain (a frozen machine destroyed would take
    # its conversation's memory with it), and once its worker has exited, with its snapshot, it goes.
    for _ in range(3):
        tick(world, policy, 10_000)
    world.step(1_000_000)
    (worker,) = [w for w in world.workers.values() if not w.exited]
    retire = replan(world, policy)
    assert [r.machine_id for r in retire.of(Resume)] == [machine.machine_id]  # type: ignore[attr-defined]
    assert [d.worker_id for d in retire.of(Drain)] == [worker.worker_id]  # type: ignore[attr-defined]
    assert retire.of(Destroy) == []
    world.apply(retire.actions)
    assert replan(world, policy).of(Destroy) == []  # resuming: not written off for its old heartbeat
    world.step(2_000)
    assert worker.exited and world.memory_saved("a")
    for _ in range(3):
        tick(world, policy, 10_000)
    assert machine.machine_id not in world.machines


def test_spare_workers_are_held_unpinned_while_traffic_is_recent_and_take_a_new_conversation_at_once() -> None:
    policy = ScalingPolicy(spare_workers=1, spare_min_arrivals=1, spare_hold_s=900, scale_down_window_s=30)
    world = World(profile=ideal(60))
    world.arrive(SimMessage("a", 0, 5_000))
    # Fewer arrivals than spare_min_arrivals within the hold: traffic too sparse to pay for a spare.
    assert len(replan(world, policy.model_copy(update={"spare_min_arrivals": 2})).of(Launch)) == 1
    first = replan(world, policy)
    # One launch pinned to "a", one unpinned spare beside it.
    assert sorted(str(a.conversation_id) for a in first.of(Launch)) == ["None", "a"]  # type: ignore[attr-defined]
    world.apply(first.actions)
    for _ in range(8):
        tick(world, policy, 15_000)
    world.arrive(SimMessage("b", world.now_ms, 5_000))
    assert world.waits_ms[-1] == 0  # the spare took it: no boot to wait for
    # Quiet for longer than spare_hold_s: nothing is held any more.
    for _ in range(3):
        tick(world, policy, 15_000)
    world.step(1_000_000)
    settle(world, policy)
    assert live(world) == 0


def test_pool_mode_spares_size_the_fleet_for_more_conversations_and_take_new_ones_at_once() -> None:
    # The shape the DigitalOcean sweep ranks first: two conversations to a worker, room for two more.
    policy = ScalingPolicy(
        mode="pool", conversations_per_worker=2, spare_workers=2, spare_min_arrivals=1, scale_down_window_s=0
    )
    world = World(profile=ideal(60))
    world.arrive(SimMessage("a", 0, 5_000))
    first = replan(world, policy)
    # 1 active + 2 spare conversations over 2 per worker: two workers, neither pinned.
    assert [a.conversation_id for a in first.of(Launch)] == [None, None]  # type: ignore[attr-defined]
    world.apply(first.actions)
    for _ in range(8):
        assert tick(world, policy).of(Drain) == []  # idle past a 0 s window, yet held as the spares
    world.arrive(SimMessage("b", world.now_ms, 5_000))
    world.arrive(SimMessage("c", world.now_ms, 5_000))
    assert world.waits_ms[1:] == [0, 0]  # two new conversations, no boot to wait for
    # Quiet for longer than spare_hold_s: nothing is held any more.
    world.step(1_000_000)
    settle(world, policy)
    assert live(world) == 0


def test_a_silent_worker_whose_machine_runs_a_newer_one_is_retired_alone() -> None:
    # A resume that booted the machine afresh: a new worker registered on it, busy; the frozen
    # one never came back. The machine and its launch are the new worker's: nothing is destroyed.
    now = 10 * HOUR_MS
    workers = [
        _view("old", launch_id="L1", heartbeat_age_ms=20 * MIN, idle_since=0),
        _view("new", launch_id="L1", busy=True),
    ]
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    p = plan(_demand(*workers, inflight=1, now=now), [_machine("m1", "L1")], ledger, ScalingPolicy(), now)
    assert [(a.worker_id, a.launch_id) for a in p.of(RetireWorker)] == [("old", None)]  # type: ignore[attr-defined]
    assert p.of(Destroy) == [] and p.current == 1


def test_an_exited_workers_machine_is_destroyed_at_once_unless_the_pool_will_keep_it() -> None:
    """A droplet bills until it is destroyed: the plan does not wait for it to be listed powered off."""
    now = 10 * HOUR_MS
    exited = _view("w1", launch_id="L1", status="stopped", status_since=now - 3_000, heartbeat_age_ms=5_000)
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    running = [_machine("m1", "L1")]
    p = plan(_demand(exited, now=now), running, ledger, ScalingPolicy(), now)
    assert [(a.machine_id, a.launch_id) for a in p.of(Destroy)] == [("m1", "L1")]  # type: ignore[attr-defined]
    assert "exited" in p.actions[0].reason and p.current == 0 and p.launching == 0
    # With room in the pool it is left to stop, and parked once stopped.
    pooled = ScalingPolicy(pool_size=2, pool_prefill=False)
    assert plan(_demand(exited, now=now), running, ledger, pooled, now).empty
    stopped = plan(_demand(exited, now=now), [_machine("m1", "L1", state="stopped")], ledger, pooled, now)
    assert [a.machine_id for a in stopped.of(Park)] == ["m1"]  # type: ignore[attr-defined]


def test_an_exit_is_history_once_its_machine_is_started_again_or_runs_another_worker() -> None:
    now = 10 * HOUR_MS
    exited = _view("w1", launch_id="L1", status="stopped", status_since=now - 60_000, heartbeat_age_ms=70_000)
    # The pool started the machine again since (even within the same millisecond); its next
    # worker has not registered yet.
    for started_at in (now - 10_000, now - 60_000):
        restarted = LaunchRecord(
            launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1", updated_at=started_at
        )
        p = plan(_demand(exited, ready=1, now=now), [_machine("m1", "L1")], [restarted], ScalingPolicy(), now)
        assert p.of(Destroy) == [] and p.launching == 1  # still a start on its way
    # Or a worker registered on it without a start of ours (a restart): that worker's machine.
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    again = _view("w2", launch_id="L1", busy=True)
    p = plan(_demand(exited, again, inflight=1, now=now), [_machine("m1", "L1")], ledger, ScalingPolicy(), now)
    assert p.of(Destroy) == [] and p.current == 1


def test_an_exited_worker_still_named_by_a_lease_or_an_upload_keeps_its_machine() -> None:
    now = 10 * HOUR_MS
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    for held in ({"busy": True}, {"snapshot_pending": True}):
        exited = _view("w1", launch_id="L1", status="stopped", status_since=now - 1_000, **held)
        p = plan(_demand(exited, now=now), [_machine("m1", "L1")], ledger, ScalingPolicy(), now)
        assert p.of(Destroy) == [], held


def test_a_machine_with_two_exits_gets_one_action_and_one_kept_for_the_pool_goes_if_it_never_stops() -> None:
    now = 10 * HOUR_MS
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    # It booted twice (a failed resume): the first boot's worker was retired, the second's exited.
    first = _view("w1", launch_id="L1", status="stopped", status_since=now - 20_000, heartbeat_age_ms=9 * MIN)
    second = _view("w2", launch_id="L1", status="stopped", status_since=now - 2_000, heartbeat_age_ms=3_000)
    pooled = ScalingPolicy(pool_size=2, pool_prefill=False)
    stopped = [_machine("m1", "L1", state="stopped")]
    p = plan(_demand(first, second, now=now), stopped, ledger, pooled, now)
    assert [(a.action, getattr(a, "worker_id", None)) for a in p.actions] == [("park", "w2")]
    assert p.parked == 1
    p = plan(_demand(first, second, now=now), [_machine("m1", "L1")], ledger, ScalingPolicy(), now)
    assert [(a.action, getattr(a, "worker_id", None)) for a in p.actions] == [("destroy", "w2")]
    # Kept for the pool, but still running well past the start grace: stuck, so it goes.
    late = now + int(pooled.start_grace_s * 1000)
    p = plan(_demand(second, now=late), [_machine("m1", "L1")], ledger, pooled, late)
    assert [a.machine_id for a in p.of(Destroy)] == ["m1"]  # type: ignore[attr-defined]


def test_an_exited_worker_whose_machine_is_gone_leaves_its_launch_to_the_ledger_rules() -> None:
    now = 10 * HOUR_MS
    exited = _view("w1", launch_id="L1", status="stopped", status_since=now - 1_000, heartbeat_age_ms=2_000)
    ledger = [LaunchRecord(launch_id="L1", provider="fly", requested_at=0, state="running", machine_id="m1")]
    p = plan(_demand(exited, now=now), [], ledger, ScalingPolicy(), now)
    assert [a.launch_id for a in p.of(CloseLaunch)] == ["L1"]  # type: ignore[attr-defined]
    assert p.of(RetireWorker) == [] and p.of(Destroy) == []


# --------------------------------------------------------------------------- properties

policies = st.builds(
    ScalingPolicy,
    mode=st.sampled_from(["affinity", "pool"]),
    conversations_per_worker=st.integers(1, 5),
    min_workers=st.integers(0, 2),
    max_workers=st.integers(2, 12),
    max_step=st.none() | st.integers(1, 6),
    scale_down_window_s=st.sampled_from([0, 60, 300]),
    budget_machines=st.none() | st.integers(2, 15),
    pool_size=st.sampled_from([0, 0, 2, 4]),
    pool_hold_s=st.none() | st.sampled_from([0, 900]),
    pool_min=st.sampled_from([0, 1]),
    keep_warm_workers=st.sampled_from([0, 2]),
    suspend_idle=st.booleans(),
    suspend_keep_s=st.sampled_from([0, 300]),  # within the convergence test's horizon
    spare_workers=st.sampled_from([0, 0, 1, 3]),
)


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """Fleets in arbitrary states: booting, busy, idle, draining, exited, parked, crashed, orphaned,
    workers that do not report their launch id, conversations that come and go."""
    world = World(profile=ideal(draw(st.sampled_from([5, 20, 60]))), auto_destroy=draw(st.booleans()))
    for c in range(draw(st.integers(0, 15))):
        world.arrive(SimMessage(f"c{c}", 0, draw(st.sampled_from([5_000, 60_000, 24 * HOUR_MS]))))
    for _ in range(draw(st.integers(0, 8))):
        world.launch(parked=draw(st.booleans()))
    world.step(draw(st.sampled_from([0, 30_000, 120_000])))
    for w in list(world.workers.values()):
        if draw(st.booleans()) and w.busy_conversation is None:
            w.status, w.status_since_ms = "draining", world.now_ms
        w.reports_launch = draw(st.booleans())
    for machine_id in list(world.machines):
        if draw(st.integers(0, 5)) == 0:
            world.crash(machine_id)
    for _ in range(draw(st.integers(0, 2))):
        world.launch()
        world.ledger.popitem()  # a machine whose launch record was lost: an orphan
    world.step(draw(st.sampled_from([0, 600_000, 1_800_000])))
    for c in range(draw(st.integers(0, 4))):
        world.arrive(SimMessage(f"c{c}", world.now_ms, 30_000))  # returning conversations
    return world


def _busy_machines(world: World) -> set[str]:
    return {w.machine_id for w in world.workers.values() if w.busy_conversation is not None}


@settings(max_examples=300, deadline=None)
@given(world=worlds(), policy=policies)
def test_a_plan_never_destroys_a_busy_worker_and_stays_within_bounds(world: World, policy: ScalingPolicy) -> None:
    p = replan(world, policy)
    removed = {a.machine_id for a in p.actions if isinstance(a, Destroy | CollectOrphan)}
    assert not removed & _busy_machines(world)
    assert policy.min_workers <= p.desired <= policy.max_workers
    launches = [a for a in p.of(Launch) if not a.parked]  # type: ignore[attr-defined]
    starts = len(p.of(Start))
    if policy.max_step is not None:
        assert len(launches) + starts <= policy.max_step
        assert len(p.of(Drain)) <= policy.max_step
    assert p.current + p.launching + len(launches) + starts <= max(policy.max_workers, p.current + p.launching)
    new = len(p.of(Launch))
    if policy.budget_machines is not None and new:
        existing = len({m.machine_id for m in world.fleet()} - removed)
        unlisted = sum(1 for r in world.open_launches() if r.state != "parked" and r.machine_id not in world.machines)
        assert existing + unlisted + new <= policy.budget_machines
    assert p.parked <= policy.pool_size or not p.of(Park)


@settings(max_examples=300, deadline=None)
@given(world=worlds(), policy=policies)
def test_applying_a_plan_then_replanning_repeats_nothing(world: World, policy: ScalingPolicy) -> None:
    unbounded = policy.model_copy(update={"max_step": None, "budget_machines": None})
    first = replan(world, unbounded)
    world.apply(first.actions)
    second = replan(world, unbounded)
    assert second.empty, second.actions


@settings(max_examples=150, deadline=None)
@given(world=worlds(), policy=policies)
def test_any_fleet_converges_and_then_stays_put(world: World, policy: ScalingPolicy) -> None:
    # Enough ticks to launch the largest fleet step by step, boot it, and wait out every window.
    ticks = 2 * (policy.max_workers // (policy.max_step or policy.max_workers) + 1) + 80
    for _ in range(ticks):
        tick(world, policy, dt_ms=30_000)
    assert replan(world, policy).empty
    assert world.busy_destroyed == 0
    active = len(world.ready()) + len(world.inflight())
    want = policy.desired(active)
    if policy.budget_machines is not None:
        want = min(want, policy.budget_machines)
    booting = sum(1 for m in world.machines.values() if m.state in ("starting", "running") and not m.booted)
    assert live(world) + booting >= min(want, policy.max_workers) or not world.ready()


def test_the_shipped_policies_suspend_on_fly_only_and_suspend_is_refused_where_it_cannot_work() -> None:
    assert scaling_policy(ScaleSettings(provider="fly")).suspend_idle
    assert not scaling_policy(ScaleSettings(provider="digitalocean")).suspend_idle
    with pytest.raises(InvalidInput, match="FACTORY_SCALE_SUSPEND_IDLE"):
        scaling_policy(ScaleSettings.model_validate({"provider": "digitalocean", "suspend_idle": True}))


def test_pool_starts_are_told_their_conversation_on_fly_only_and_refused_where_they_cannot_be() -> None:
    assert scaling_policy(ScaleSettings(provider="fly")).pin_pool_starts
    assert not scaling_policy(ScaleSettings(provider="local")).pin_pool_starts
    with pytest.raises(InvalidInput, match="FACTORY_SCALE_PIN_POOL_STARTS"):
        scaling_policy(ScaleSettings.model_validate({"provider": "digitalocean", "pin_pool_starts": True}))
