"""One interpreter of plans: dispatch hands each kind of action to its own handler method."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from autoscaler import plan


class Names:
    """A handler whose every method answers with its own name."""

    def __getattr__(self, name: str) -> Callable[[plan.Action], str]:
        return lambda action: name


@pytest.mark.parametrize(
    ("action", "method"),
    [
        (plan.Launch(reason="r"), "on_launch"),
        (plan.Start(reason="r", machine_id="m", launch_id="l"), "on_start"),
        (plan.Suspend(reason="r", machine_id="m", worker_id="w"), "on_suspend"),
        (plan.Resume(reason="r", machine_id="m", worker_id="w"), "on_resume"),
        (plan.Park(reason="r", machine_id="m", launch_id="l"), "on_park"),
        (plan.Drain(reason="r", worker_id="w"), "on_drain"),
        (plan.Destroy(reason="r", machine_id="m"), "on_destroy"),
        (plan.CollectOrphan(reason="r", machine_id="m"), "on_collect_orphan"),
        (plan.RetireWorker(reason="r", worker_id="w"), "on_retire_worker"),
        (plan.ResolveLaunch(reason="r", launch_id="l"), "on_resolve_launch"),
        (plan.CloseLaunch(reason="r", launch_id="l"), "on_close_launch"),
    ],
)
def test_each_action_reaches_its_own_method(action: plan.Action, method: str) -> None:
    assert plan.dispatch(action, Names()) == method
