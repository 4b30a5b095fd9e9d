"""A plan: what one reconcile tick will do, each action with the reason for it. Plain data.

Whoever carries a plan out (the reconciler against a platform, the simulator against its model
world) implements :class:`PlanHandler`, one method per kind of action, and hands each action to
:func:`dispatch`: the one place that knows which method an action calls, checked exhaustive.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol, TypeVar, assert_never

from pydantic import BaseModel, ConfigDict, Field


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str


class Launch(_Action):
    """Create one worker machine. The reconciler names it (launch id) and records it first.

    ``parked``: create it stopped, as a warm-pool member (Fly's ``skip_launch``), not booted.
    ``sticky``: an unpinned worker pins itself to the first conversation it takes.
    """

    action: Literal["launch"] = "launch"
    # Affinity: the conversation the new worker serves (it claims only that one).
    conversation_id: str | None = None
    parked: bool = False
    sticky: bool = False


class Start(_Action):
    """Start a parked (stopped) pool machine: a worker boots on it, far sooner than on a new one."""

    action: Literal["start"] = "start"
    machine_id: str
    launch_id: str
    # Told this conversation before it boots (``pin_pool_starts``): it restores its memory.
    conversation_id: str | None = None


class _WorkerMachine(_Action):
    """An action on the machine of a worker that stays registered throughout."""

    machine_id: str
    worker_id: str
    launch_id: str | None = None


class Suspend(_WorkerMachine):
    """Freeze an idle worker's machine with its memory (Fly): billed as stopped, and resumed with its
    worker and gateway running, so its conversation's next message skips the gateway's start."""

    action: Literal["suspend"] = "suspend"


class Resume(_WorkerMachine):
    """Start a suspended machine again: its worker carries on where it was frozen."""

    action: Literal["resume"] = "resume"


class Park(_Action):
    """Keep a stopped machine whose worker has exited as a warm-pool member instead of destroying it."""

    action: Literal["park"] = "park"
    machine_id: str
    launch_id: str
    worker_id: str | None = None


class Drain(_Action):
    """Tell an idle worker to finish up and exit; its machine is destroyed once it has."""

    action: Literal["drain"] = "drain"
    worker_id: str


class Destroy(_Action):
    """Remove a machine whose worker has exited, crashed, or overstayed its drain."""

    action: Literal["destroy"] = "destroy"
    machine_id: str
    worker_id: str | None = None
    launch_id: str | None = None


class CollectOrphan(_Action):
    """Remove a tagged machine that no worker and no launch account for."""

    action: Literal["collect_orphan"] = "collect_orphan"
    machine_id: str
    launch_id: str | None = None


class RetireWorker(_Action):
    """Mark a worker stopped in the store: its machine is gone, or it never had one we manage.
    Its launch, if it named one, is closed with it (nothing is left for a later tick to settle)."""

    action: Literal["retire_worker"] = "retire_worker"
    worker_id: str
    launch_id: str | None = None


class ResolveLaunch(_Action):
    """A launch never showed up: look it up by its tag, adopt it if found, else give it up."""

    action: Literal["resolve_launch"] = "resolve_launch"
    launch_id: str


class CloseLaunch(_Action):
    """Close a ledger entry whose machine is gone."""

    action: Literal["close_launch"] = "close_launch"
    launch_id: str


Action = Annotated[
    Launch
    | Start
    | Suspend
    | Resume
    | Park
    | Drain
    | Destroy
    | CollectOrphan
    | RetireWorker
    | ResolveLaunch
    | CloseLaunch,
    Field(discriminator="action"),
]


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: tuple[Action, ...] = ()
    desired: int
    current: int
    launching: int
    parked: int = 0
    summary: str
    # When this plan would next change with nothing else happening: the first idle worker's
    # scale-down window ends then, or a launch on its way passes its hedge (None: neither is
    # pending). A watching reconciler looks again at that moment instead of a whole interval later.
    recheck_in_s: float | None = None

    @property
    def empty(self) -> bool:
        return not self.actions

    def of(self, kind: type[_Action]) -> list[_Action]:
        return [a for a in self.actions if isinstance(a, kind)]


def target(action: Action) -> str:
    """What an action acts on, for a person: ``machine m1``, ``worker w1``, ``launch l1``, ``new machine``."""
    for attr in ("machine_id", "worker_id", "launch_id"):
        value = getattr(action, attr, None)
        if value:
            return f"{attr.removesuffix('_id')} {value}"
    return "new machine"


R = TypeVar("R", covariant=True)


class PlanHandler(Protocol[R]):
    """Carries out each kind of action; ``R`` is what one action yields (an awaitable, for async handlers)."""

    def on_launch(self, action: Launch) -> R: ...
    def on_start(self, action: Start) -> R: ...
    def on_suspend(self, action: Suspend) -> R: ...
    def on_resume(self, action: Resume) -> R: ...
    def on_park(self, action: Park) -> R: ...
    def on_drain(self, action: Drain) -> R: ...
    def on_destroy(self, action: Destroy) -> R: ...
    def on_collect_orphan(self, action: CollectOrphan) -> R: ...
    def on_retire_worker(self, action: RetireWorker) -> R: ...
    def on_resolve_launch(self, action: ResolveLaunch) -> R: ...
    def on_close_launch(self, action: CloseLaunch) -> R: ...


def dispatch(action: Action, handler: PlanHandler[R]) -> R:
    """Hand ``action`` to the ``handler`` method for its kind and return what that returns."""
    match action:
        case Launch():
            return handler.on_launch(action)
        case Start():
            return handler.on_start(action)
        case Suspend():
            return handler.on_suspend(action)
        case Resume():
            return handler.on_resume(action)
        case Park():
            return handler.on_park(action)
        case Drain():
            return handler.on_drain(action)
        case Destroy():
            return handler.on_destroy(action)
        case CollectOrphan():
            return handler.on_collect_orphan(action)
        case RetireWorker():
            return handler.on_retire_worker(action)
        case ResolveLaunch():
            return handler.on_resolve_launch(action)
        case CloseLaunch():
            return handler.on_close_launch(action)
        case _:
            assert_never(action)
