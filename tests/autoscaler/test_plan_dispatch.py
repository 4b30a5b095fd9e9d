"""One interpreter of plans: dispatch hands each kind of action to its own handler method."""

from __future__ import annotations

import pytest

from autoscaler.plan import (
    Action,
    CloseLaunch,
    CollectOrphan,
    Destroy,
    Drain,
    Launch,
    PlanHandler,
    ResolveLaunch,
    RetireWorker,
    dispatch,
)


class Names:
    """A handler that answers with the name of the method it was asked for."""

    def on_launch(self, action: Launch) -> str:
        return "on_launch"

    def on_drain(self, action: Drain) -> str:
        return "on_drain"

    def on_destroy(self, action: Destroy) -> str:
        return "on_destroy"

    def on_collect_orphan(self, action: CollectOrphan) -> str:
        return "on_collect_orphan"

    def on_retire_worker(self, action: RetireWorker) -> str:
        return "on_retire_worker"

    def on_resolve_launch(self, action: ResolveLaunch) -> str:
        return "on_resolve_launch"

    def on_close_launch(self, action: CloseLaunch) -> str:
        return "on_close_launch"


_: PlanHandler[str] = Names()


@pytest.mark.parametrize(
    ("action", "method"),
    [
        (Launch(reason="r"), "on_launch"),
        (Drain(reason="r", worker_id="w"), "on_drain"),
        (Destroy(reason="r", machine_id="m"), "on_destroy"),
        (CollectOrphan(reason="r", machine_id="m"), "on_collect_orphan"),
        (RetireWorker(reason="r", worker_id="w"), "on_retire_worker"),
        (ResolveLaunch(reason="r", launch_id="l"), "on_resolve_launch"),
        (CloseLaunch(reason="r", launch_id="l"), "on_close_launch"),
    ],
)
def test_each_action_reaches_its_own_method(action: Action, method: str) -> None:
    assert dispatch(action, Names()) == method
