"""The simulated world's helpers for drivers other than the planner (used by bench/autoscaler_bench.py)."""

from __future__ import annotations

from autoscaler.simulate import SimMessage, World


def _booted(world: World, count: int, *, gap_ms: int = 0) -> list[str]:
    """Launch ``count`` machines ``gap_ms`` apart, then let them all boot; return their machine ids."""
    launches = []
    for _ in range(count):
        launches.append(world.launch())
        world.step(gap_ms)
    world.step(int(world.boot_s * 1000))
    return [world.ledger[launch].machine_id or "" for launch in launches]


def test_queued_messages_and_active_conversations() -> None:
    world = World(boot_s=1)
    assert world.queued_messages() == 0 and world.active_conversations() == set()
    world.arrive(SimMessage("a", 0, 60_000))
    world.arrive(SimMessage("a", 0, 60_000))
    world.arrive(SimMessage("b", 0, 60_000))
    assert world.queued_messages() == 3
    _booted(world, 1)  # takes a's first message (the oldest ready conversation, then by name)
    assert world.inflight() == {"a"}
    assert world.queued_messages() == 2
    assert world.active_conversations() == {"a", "b"}


def test_reap_exited_destroys_only_machines_whose_worker_exited() -> None:
    world = World(boot_s=1, idle_exit_s=10)
    _booted(world, 1)
    world.arrive(SimMessage("a", world.now_ms, 60_000))
    _booted(world, 1)  # the first worker takes "a" at once; the second boots and stays idle
    world.step(10_000)
    assert world.reap_exited() == 1
    assert len(world.machines) == 1 and world.inflight() == {"a"}
    assert world.busy_destroyed == 0
    assert len(world.open_launches()) == 1


def test_destroy_newest_picks_booting_then_newest_and_ignores_busy() -> None:
    world = World(boot_s=5)
    oldest, middle, newest = _booted(world, 3, gap_ms=1_000)
    world.arrive(SimMessage("a", world.now_ms, 60_000))
    world.step(0)
    busy = {w.machine_id for w in world.workers.values() if w.busy_conversation is not None}
    assert busy == {oldest}  # the lowest worker id takes the work
    booting = world.ledger[world.launch()].machine_id
    assert world.destroy_newest(2) == 2
    assert set(world.machines) == {oldest, middle} and booting not in world.machines and newest not in world.machines
    assert world.destroy_newest(5) == 2
    assert world.machines == {}
    assert world.busy_destroyed == 1 and world.queued_messages() == 1  # the job went back to its queue


def test_next_change_names_boots_job_ends_and_idle_exits() -> None:
    world = World(boot_s=20, idle_exit_s=30)
    assert world.next_change_ms() is None
    world.launch()
    assert world.next_change_ms() == 20_000
    world.arrive(SimMessage("a", 0, 7_000))
    world.step(20_000)  # booted and took the message
    assert world.next_change_ms() == 27_000
    world.step(7_000)
    assert world.done == 1 and world.next_change_ms() == 57_000
    world.step(30_000)
    assert world.machines["m0"].state == "stopped" and world.next_change_ms() is None


def _replay(messages: list[SimMessage], end_ms: int, *, by_event: bool) -> World:
    world = World(boot_s=20, idle_exit_s=45)
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
        world.step(at - world.now_ms)
        while pending and pending[0].arrived_ms <= world.now_ms:
            world.arrive(pending.pop(0))
        if world.now_ms % 60_000 == 0:
            world.reap_exited()
            for _ in range(2 - len(world.machines)):
                world.launch()
        world.step(0)
    return world


def test_stepping_from_change_to_change_matches_stepping_every_second() -> None:
    # A busy spell (jobs queue, workers stay busy), then sparse messages (workers idle out between them).
    busy = [SimMessage(f"c{(i * 7) % 5}", 1_000 * ((i * 37) % 400), 1_000 * (1 + (i * 13) % 50)) for i in range(40)]
    sparse = [SimMessage(f"c{i % 3}", 1_000 * (420 + 71 * i), 3_000) for i in range(7)]
    messages = busy + sparse
    fine = _replay(messages, 900_000, by_event=False)
    coarse = _replay(messages, 900_000, by_event=True)
    assert fine.done > 0
    assert (coarse.done, coarse.machine_ms, coarse.waits_ms) == (fine.done, fine.machine_ms, fine.waits_ms)
