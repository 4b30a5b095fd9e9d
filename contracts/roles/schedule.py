"""The schedule role: push templates and jobs, their dispatches, and broadcasts."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.push import Broadcast, BroadcastRequest, PushDispatch, PushDispatchRequest, PushJob, PushTemplate
from contracts.roles.base import StoreHandle


@runtime_checkable
class ScheduleStore(StoreHandle, Protocol):
    async def push_template_put(self, template: PushTemplate) -> PushTemplate:
        """Create or replace a template (by id)."""
        ...

    async def push_template_delete(self, template_id: str) -> bool:
        """Delete a template no job uses; False when there was none."""
        ...

    async def push_templates(self) -> list[PushTemplate]: ...

    async def push_job_put(self, job: PushJob) -> PushJob:
        """Create or replace a job (by id); its template must exist. The caller sets nextRunAt."""
        ...

    async def push_job_delete(self, job_id: str) -> bool: ...

    async def push_jobs(self, *, due_at: int | None = None, limit: int = 500) -> list[PushJob]:
        """Every job, or only the enabled ones whose nextRunAt is at or before ``due_at``."""
        ...

    async def push_dispatch(self, request: PushDispatchRequest) -> PushDispatch:
        """Carry out one slot atomically: enqueue, record the run key, move the job on.

        A run key already recorded returns that record (``fresh`` false) and changes nothing; so
        does a scheduled request whose ``expectedNextRunAt`` is stale (another dispatcher won)."""
        ...

    async def push_dispatches(self, job_id: str, limit: int = 50) -> list[PushDispatch]: ...

    async def broadcast(self, request: BroadcastRequest) -> Broadcast:
        """Enqueue the text to every conversation of the chosen enabled agents, once per broadcast
        id; a repeated id returns the first outcome (``fresh`` false) and enqueues nothing."""
        ...

    async def broadcasts(self, limit: int = 50) -> list[Broadcast]: ...
