"""The worker's configuration: plain frozen values, built from settings at the edge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from contracts.models import MachineRef


class WorkerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    worker_id: str = Field(min_length=1)
    provider: str = "local"
    machine_ref: MachineRef | None = None
    launch_id: str | None = None
    capabilities: tuple[str, ...] = ("telegram",)
    # Pin this worker to one conversation (sticky workers, upstream's OPENCLAW_CONVERSATION_ID).
    conversation_id: str | None = None
    # Unpinned: pin itself to the conversation of its first job (one whose memory is not already
    # in a snapshot), so that memory stays here and is snapshot when the worker stops.
    sticky: bool = False
    workspace_id: str = "default"
    # Pinned: snapshot the conversation each time the worker runs out of work with turns its newest
    # snapshot lacks, not only when it stops: a machine lost while suspended (a resume that boots
    # afresh) or crashed then costs the conversation no memory. False: only when it stops.
    snapshot_when_idle: bool = True
    # Safety-net poll while idle; the store's wait-for-work signal usually wakes us far sooner.
    poll_s: float = Field(1.0, gt=0)
    # Exit after this long without work (None: never).
    idle_exit_s: float | None = Field(None, gt=0)
    # On shutdown, how long the job in flight may keep running before it is failed as retryable.
    grace_s: float = Field(30.0, ge=0)
    # The gateway starts beside the worker (a machine image): register at once, then wait up to
    # this long for it to be ready before the first claim (None: it is already up).
    gateway_wait_s: float | None = Field(None, gt=0)
    once: bool = False
