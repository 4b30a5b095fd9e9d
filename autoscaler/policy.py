"""How the fleet should size itself: a frozen, validated scaling policy."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ScalingPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # affinity: one worker per active conversation (agent-factory's rule);
    # pool: one worker per `conversations_per_worker` active conversations.
    mode: Literal["affinity", "pool"] = "affinity"
    conversations_per_worker: int = Field(4, ge=1)
    min_workers: int = Field(0, ge=0)
    max_workers: int = Field(10, ge=0)
    # Launches and drains per tick, each: a tick takes a bounded step, the next tick continues.
    max_step: int = Field(5, ge=1)
    # A worker must have been idle this long before it counts as excess (scale-down stabilisation).
    scale_down_window_s: float = Field(300.0, ge=0)
    # Launched workers exit on their own after this long idle (None: they wait to be drained).
    idle_timeout_s: float | None = Field(None, gt=0)
    # The most machines that may exist at once, launching ones included (a spending cap).
    budget_machines: int | None = Field(None, ge=0)
    # A launch that has shown neither a machine nor a worker after this long is looked up, then given up.
    launch_timeout_s: float = Field(300.0, gt=0)
    # A draining worker that has not exited after this long is stopped and its machine destroyed.
    drain_deadline_s: float = Field(600.0, gt=0)
    # A worker whose heartbeat is older than this is gone (crashed, or its machine died).
    stale_worker_s: float = Field(300.0, gt=0)
    # A tagged machine nobody accounts for is collected after this long (covers slow registration).
    orphan_grace_s: float = Field(600.0, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers ({self.min_workers}) is above max_workers ({self.max_workers})")
        if self.budget_machines is not None and self.budget_machines < self.min_workers:
            raise ValueError(f"budget_machines ({self.budget_machines}) is below min_workers ({self.min_workers})")
        if self.idle_timeout_s is not None and self.min_workers > 0:
            raise ValueError(
                "idle_timeout_s with min_workers > 0 would churn: workers would exit and be relaunched; set one of them"
            )
        return self

    def desired(self, active_conversations: int) -> int:
        """Workers wanted for this many active conversations, before the budget."""
        if self.mode == "affinity":
            wanted = active_conversations
        else:
            wanted = -(-active_conversations // self.conversations_per_worker)
        return max(self.min_workers, min(self.max_workers, wanted))
