"""A plan: what one reconcile tick will do, each action with the reason for it. Plain data."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str


class Launch(_Action):
    """Create one worker machine. The reconciler names it (launch id) and records it first."""

    action: Literal["launch"] = "launch"


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
    """Mark a worker stopped in the store: its machine is gone, or it never had one we manage."""

    action: Literal["retire_worker"] = "retire_worker"
    worker_id: str


class ResolveLaunch(_Action):
    """A launch never showed up: look it up by its tag, adopt it if found, else give it up."""

    action: Literal["resolve_launch"] = "resolve_launch"
    launch_id: str


class CloseLaunch(_Action):
    """Close a ledger entry whose machine is gone."""

    action: Literal["close_launch"] = "close_launch"
    launch_id: str


Action = Annotated[
    Launch | Drain | Destroy | CollectOrphan | RetireWorker | ResolveLaunch | CloseLaunch,
    Field(discriminator="action"),
]


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: tuple[Action, ...] = ()
    desired: int
    current: int
    launching: int
    summary: str

    @property
    def empty(self) -> bool:
        return not self.actions

    def of(self, kind: type[_Action]) -> list[_Action]:
        return [a for a in self.actions if isinstance(a, kind)]
