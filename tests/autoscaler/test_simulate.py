"""The simulated world: what it charges and how it behaves per provider (the bench's honesty)."""

from __future__ import annotations

import dataclasses

from autoscaler.plan import Drain
from autoscaler.simulate import DIGITALOCEAN, FLY, SimMessage, World, ideal


def _booted(world: World, count: int, *, gap_ms: int = 0) -> list[str]:
    """Launch ``count`` machines ``gap_ms`` apart, then let them all boot; return their machine ids."""
    launches = []
    for _ in range(count):
        launch = world.launch()
        assert launch is not None
        launches.append(launch)
        world.step(gap_ms)
    world.step(120_000)
    return [world.ledger[launch].machine_id or "" for launch in launches]


def test_boot_takes_the_providers_time_then_the_gateways() -> None:
    for profile in (FLY, DIGITALOCEAN):
        quiet = dataclasses.replace(profile, boot_fail_p=0.0, create_fail_p=0.0, rate_429_p=0.0)
        world = World(profile=quiet, seed=3)
        world.launch()
        slowest = 1000 * (profile.create_s[1] + profile.ready_s[1])
        fastest = 1000 * (profile.create_s[0] + profile.ready_s[0])
        world.step(int(fastest) - 1)
        assert not world.workers
        world.step(int(slowest - fastest) + 1)
        assert len(world.workers) == 1


def test_paced_creates_wait_for_the_rate_limit_and_unpaced_ones_are_refused() -> None:
    quiet = dataclasses.replace(FLY, create_fail_p=0.0, rate_429_p=0.0)
    paced = World(profile=quiet)
    for _ in range(6):
        paced.launch()
    # Fly: a burst of 3, then one a second.
    assert sorted(m.created_ms for m in paced.machines.values()) == [0, 0, 0]
    paced.step(3_000)
    assert sorted(m.created_ms for m in paced.machines.values()) == [0, 0, 0, 1_000, 2_000, 3_000]
    unpaced = World(profile=quiet, paced=False)
    made = [unpaced.launch() for _ in range(6)]
    assert sum(1 for launch in made if launch is None) == 3 and unpaced.refused == 3


def test_a_new_machine_is_missing_from_lists_for_the_lag() -> None:
    world = World(profile=dataclasses.replace(ideal(30), list_lag_s=5))
    world.launch()
    assert world.fleet() == [] and len(world.open_launches()) == 1
    world.step(5_000)
    assert len(world.fleet()) == 1


def test_a_machine_whose_boot_fails_runs_and_bills_without_a_worker() -> None:
    world = World(profile=ideal(5, boot_fail_p=1.0))
    world.launch()
    world.step(60_000)
    assert not world.workers and len(world.machines) == 1
    assert world.billed_ms == 60_000


def test_parked_machines_bill_their_share_and_droplets_a_minimum() -> None:
    fly = World(profile=ideal(2, parked_cost=0.01), auto_destroy=False)
    launch = fly.launch(parked=True)
    assert launch is not None and fly.ledger[launch].state == "parked"
    fly.step(100_000)
    assert fly.billed_ms == 1_000  # 100 s at 1 %
    droplet = World(profile=dataclasses.replace(DIGITALOCEAN, create_fail_p=0.0, rate_429_p=0.0), seed=1)
    launch = droplet.launch()
    assert launch is not None
    droplet.step(10_000)
    droplet.destroy(droplet.ledger[launch].machine_id or "")
    assert droplet.billed_ms == 60_000  # 10 s used, 60 s billed


def test_a_worker_switching_conversations_pays_for_a_fresh_session() -> None:
    world = World(profile=ideal(1, switch_s=(2.0, 2.0)))
    _booted(world, 1)
    world.arrive(SimMessage("a", world.now_ms, 1_000))
    world.step(10_000)
    world.arrive(SimMessage("a", world.now_ms, 1_000))  # the same conversation: no switch
    world.step(10_000)
    world.arrive(SimMessage("b", world.now_ms, 1_000))
    world.step(10_000)
    assert world.waits_ms == [2_000, 0, 2_000]


def test_an_exited_worker_leaves_its_machine_stopping_then_gone_or_stopped() -> None:
    for auto_destroy in (True, False):
        world = World(profile=ideal(1, stop_s=(4.0, 4.0)), idle_exit_s=10, auto_destroy=auto_destroy)
        (machine,) = _booted(world, 1)
        assert machine not in world.machines if auto_destroy else world.machines[machine].state == "stopped"
        world = World(profile=ideal(1, stop_s=(4.0, 4.0)), idle_exit_s=10, auto_destroy=auto_destroy)
        world.launch()
        world.step(11_000)
        assert world.fleet()[0].state == "stopping"


def test_queued_messages_and_active_conversations() -> None:
    world = World(profile=ideal(1))
    assert world.queued_messages() == 0 and world.active_conversations() == set()
    world.arrive(SimMessage("a", 0, 60_000))
    world.arrive(SimMessage("a", 0, 60_000))
    world.arrive(SimMessage("b", 0, 60_000))
    assert world.queued_messages() == 3
    world.launch()
    world.step(1_000)  # takes a's first message (the oldest ready conversation, then by name)
    assert world.inflight() == {"a"}
    assert world.queued_messages() == 2
    assert world.active_conversations() == {"a", "b"}
    assert {r.conversation_id: r.active for r in world.demand().recent} == {"a": True, "b": True}


def test_destroy_newest_picks_booting_then_newest_and_ignores_busy() -> None:
    world = World(profile=ideal(5))
    oldest, middle, newest = _booted(world, 3, gap_ms=1_000)
    world.arrive(SimMessage("a", world.now_ms, 600_000))
    busy = {w.machine_id for w in world.workers.values() if w.busy_conversation is not None}
    assert busy == {oldest}  # the lowest worker id takes the work
    booting = world.launch()
    assert booting is not None
    assert world.destroy_newest(2) == 2
    assert set(world.machines) == {oldest, middle} and newest not in world.machines
    assert world.destroy_newest(5) == 2
    assert world.machines == {}
    assert world.busy_destroyed == 1 and world.queued_messages() == 1  # the job went back to its queue


def _replay(messages: list[SimMessage], end_ms: int, *, by_event: bool) -> World:
    world = World(profile=FLY, seed=7, idle_exit_s=45)
    world.launch()
    world.launch()
    pending = sorted(messages, key=lambda m: m.arrived_ms)
    while world.now_ms < end_ms:
        if by_event:
            next_minute = (world.now_ms // 60_000 + 1) * 60_000  # the driver's own "tick"
            candidates = [end_ms, next_minute] + [m.arrived_ms for m in pending[:1]]
            change = world.next_change_ms()
            at = min(candidates if change is None else [*candidates, change])
        else:
            at = world.now_ms + 1_000
        world.advance(at)
        while pending and pending[0].arrived_ms <= world.now_ms:
            world.arrive(pending.pop(0))
        if world.now_ms % 60_000 == 0:
            world.reap_exited()
            for _ in range(2 - len(world.machines)):
                world.launch()
    return world


def test_stepping_from_change_to_change_matches_stepping_every_second() -> None:
    # A busy spell (jobs queue, workers stay busy), then sparse messages (workers idle out between them).
    busy = [SimMessage(f"c{(i * 7) % 5}", 1_000 * ((i * 37) % 400), 1_000 * (1 + (i * 13) % 50)) for i in range(40)]
    sparse = [SimMessage(f"c{i % 3}", 1_000 * (420 + 71 * i), 3_000) for i in range(7)]
    messages = busy + sparse
    fine = _replay(messages, 900_000, by_event=False)
    coarse = _replay(messages, 900_000, by_event=True)
    assert fine.done > 0
    assert (coarse.done, coarse.billed_ms, coarse.waits_ms) == (fine.done, fine.billed_ms, fine.waits_ms)


def test_a_worker_goes_idle_only_when_its_complete_finds_nothing_to_take() -> None:
    world = World(profile=ideal(5))
    world.launch()
    world.step(10_000)
    # Two messages of one conversation back to back, then one more after a gap.
    world.arrive(SimMessage("c1", world.now_ms, 2_000))
    world.arrive(SimMessage("c1", world.now_ms, 2_000))
    world.step(2_000)
    assert (world.done, world.went_idle) == (1, 0)  # it took the second message at once
    world.step(2_000)
    assert (world.done, world.went_idle) == (2, 1)
    world.arrive(SimMessage("c1", world.now_ms, 1_000))
    world.step(1_000)
    assert (world.done, world.went_idle) == (3, 2)


def test_a_returning_turn_has_its_memory_only_where_it_ran_last_or_from_a_snapshot_that_holds_it() -> None:
    """The bench's ``no mem``: a worker new to a conversation served before has the history window
    only; a pinned worker that exited gracefully left a snapshot a successor pinned there restores."""
    world = World(profile=ideal(5))
    world.launch(pinned="a")
    world.step(60_000)
    for _ in range(2):  # its pinned worker runs both turns: the second finds the first's state
        world.arrive(SimMessage("a", world.now_ms, 1_000))
        world.step(2_000)
    assert (world.returning, world.forgot) == (1, 0)
    (pinned,) = world.workers.values()
    world.apply([Drain(worker_id=pinned.worker_id, reason="idle")])
    world.step(60_000)  # it exits gracefully: its snapshot holds both turns
    assert pinned.exited and world.memory_saved("a")

    world.launch(pinned="a")  # a new machine for the conversation restores that snapshot
    world.step(60_000)
    world.arrive(SimMessage("a", world.now_ms, 1_000))
    world.step(2_000)
    assert (world.returning, world.forgot) == (2, 0)

    world.launch()  # an unpinned worker; the pinned one is busy with a long turn of "a"'s own
    world.step(60_000)
    world.arrive(SimMessage("a", world.now_ms, 30_000))
    world.step(1_000)
    world.arrive(SimMessage("b", world.now_ms, 1_000))
    world.step(2_000)  # b's first turn, on the unpinned worker: nothing to forget
    assert (world.returning, world.forgot) == (3, 0)
    world.arrive(SimMessage("b", world.now_ms, 1_000))
    world.step(2_000)  # b's second: the worker that ran the first has it
    assert (world.returning, world.forgot) == (4, 0)
    unpinned = next(w for w in world.workers.values() if w.pinned is None and not w.exited)
    busy = next(w for w in world.workers.values() if w.pinned == "a" and not w.exited)
    world.destroy(busy.machine_id)  # "a"'s pinned machine is lost mid-turn: no snapshot of it
    world.apply([])  # its turn goes back to the queue, and the unpinned worker takes it up from
    world.step(2_000)  # the history window alone
    assert unpinned.last_conversation == "a"
    assert (world.returning, world.forgot) == (5, 1)


def test_the_memory_steps_are_charged_prepare_restore_and_snapshot() -> None:
    """A pinned boot prepares its agent (``prepare_s``) and, restoring a snapshot, starts its gateway
    slower (``restore_s``); a worker that ran out of work takes its next job once its snapshot is up
    (``snapshot_s``), though the store sees it idle from its complete on."""
    profile = ideal(5, prepare_s=(1.0, 1.0), restore_s=(2.0, 2.0), snapshot_s=(3.0, 3.0))
    world = World(profile=profile)
    world.launch(pinned="a")
    world.step(5_900)
    assert not world.workers  # a 5 s boot and a 1 s prepare: nothing to restore yet
    world.step(200)
    (first,) = world.workers.values()

    world.arrive(SimMessage("a", world.now_ms, 1_000))
    world.step(1_000)  # done: nothing queued, so it snapshots for 3 s
    assert world.memory_saved("a") and world.went_idle == 1
    world.step(500)
    world.arrive(SimMessage("a", world.now_ms, 1_000))  # waits for the snapshot
    world.step(3_000)
    assert world.waits_ms == [0, 2_500]

    world.step(2_000)  # done again, and snapshot again
    world.apply([Drain(worker_id=first.worker_id, reason="idle")])
    world.step(10_000)  # its exit finds every turn saved: no snapshot, no extra stop time
    assert first.exited
    launched_at = world.now_ms
    world.launch(pinned="a")  # a successor restores the snapshot: boot, prepare, the slower gateway
    world.step(7_900)
    assert [w for w in world.workers.values() if not w.exited] == []
    world.step(200)
    (second,) = [w for w in world.workers.values() if not w.exited]
    assert second.registered_ms - launched_at == 8_000
    world.arrive(SimMessage("a", world.now_ms, 1_000))
    world.step(2_000)
    assert (world.returning, world.forgot) == (2, 0)


def test_an_idle_exit_counts_from_the_complete_when_a_snapshot_came_between() -> None:
    """Upstream's workers exit after ``idle_exit_s`` idle: the snapshot after a turn does not restart
    (or lose) that timer."""
    world = World(profile=ideal(5, snapshot_s=(3.0, 3.0)), idle_exit_s=60.0)
    world.launch(pinned="a")
    world.step(10_000)
    (worker,) = world.workers.values()
    world.arrive(SimMessage("a", world.now_ms, 1_000))
    done_at = world.now_ms + 1_000
    world.step(done_at + 59_900 - world.now_ms)
    assert not worker.exited
    world.step(200)
    assert worker.exited
