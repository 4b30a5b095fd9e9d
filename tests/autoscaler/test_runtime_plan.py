"""One runtime machine per active account: the pure rule (property tests)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from autoscaler.provider import Machine, MachineState
from autoscaler.runtimes import (
    account_of,
    account_of_launch,
    new_launch_id,
    plan_runtimes,
    runtime_worker_id,
)

ACCOUNTS = ["acme", "globex", "initech", "a.b-c"]
STATES: list[MachineState] = ["starting", "running", "stopping", "stopped", "failed", "unknown"]
LIVE = {"starting", "running", "unknown"}

machines_st = st.lists(
    st.tuples(st.sampled_from([*ACCOUNTS, "gone"]), st.sampled_from(STATES), st.integers(0, 10**6)), max_size=12
)


def _fleet(rows: list[tuple[str, MachineState, int]]) -> list[Machine]:
    return [
        Machine(
            machine_id=f"m{i}",
            provider="digitalocean",
            state=state,
            launch_id=new_launch_id(account),
            worker_id=runtime_worker_id(account),
            created_at_ms=created,
        )
        for i, (account, state, created) in enumerate(rows)
    ]


def _applied(machines: list[Machine], create: tuple[str, ...], destroy: set[str]) -> list[Machine]:
    kept = [m for m in machines if m.machine_id not in destroy]
    return kept + _fleet([(a, "starting", 10**7) for a in create])


@given(active=st.sets(st.sampled_from(ACCOUNTS)), rows=machines_st, launching=st.sets(st.sampled_from(ACCOUNTS)))
def test_after_the_plan_each_active_account_has_one_live_runtime_and_replanning_changes_nothing(
    active: set[str], rows: list[tuple[str, MachineState, int]], launching: set[str]
) -> None:
    machines = _fleet(rows)
    plan = plan_runtimes(active, machines, launching)
    destroyed = {machine_id for machine_id, _ in plan.destroy}
    assert len(destroyed) == len(plan.destroy) and len(set(plan.create)) == len(plan.create)
    assert set(plan.create) <= active - launching
    after = _applied(machines, plan.create, destroyed)
    for account in active:
        live = [m for m in after if account_of(m) == account and m.state in LIVE]
        had = [m for m in machines if account_of(m) == account and m.state in LIVE]
        # Never duplicated; covered unless a launch of it is already on its way.
        assert len(live) <= 1
        assert len(live) == 1 or (account in launching and not had)
        if had:  # an account that kept a live machine keeps its oldest one: nothing replaced needlessly
            oldest = min(had, key=lambda m: (m.created_at_ms or 0, m.machine_id))
            assert [m.machine_id for m in live] == [oldest.machine_id]
    assert all(account_of(m) in active for m in after if m.state in LIVE)
    # Machines on their way down are left to finish; everything else that ended is cleared away.
    assert all(m.state in LIVE or m.state == "stopping" for m in after)
    assert plan_runtimes(active, after, launching).empty


def test_a_dead_runtime_is_replaced_in_one_plan() -> None:
    (dead,) = _fleet([("acme", "failed", 1)])
    plan = plan_runtimes({"acme"}, [dead])
    assert plan.create == ("acme",)
    assert plan.destroy == ((dead.machine_id, "runtime of acme failed: replaced"),)


def test_launch_ids_carry_their_account() -> None:
    launch = new_launch_id("a.b-c")
    assert account_of_launch(launch) == "a.b-c"
    assert account_of_launch("launch-123") is None
