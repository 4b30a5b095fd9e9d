"""The fleet role: what the autoscaler reads and records while it reconciles machines."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from contracts.models import (
    DemandSnapshot,
    LaunchRecord,
    LaunchState,
    ReconcileRecord,
    ReleaseResult,
    SetWorkerStatusRequest,
)
from contracts.roles.base import StoreHandle


@runtime_checkable
class FleetStore(StoreHandle, Protocol):
    async def fleet_demand(self) -> DemandSnapshot:
        """Everything the planner learns from the store, taken in one read."""
        ...

    async def fleet_set_worker_status(self, request: SetWorkerStatusRequest) -> bool:
        """Move a worker forward (active → draining → stopping → stopped); never backwards."""
        ...

    async def release_expired(self) -> ReleaseResult:
        """The sweep: expired leases back to the queue, or to the dead letter when out of attempts."""
        ...

    async def acquire_reconcile_lock(self, holder: str, ttl_ms: int) -> bool:
        """Take (or renew, for the same holder) the single reconcile lock until it expires."""
        ...

    async def release_reconcile_lock(self, holder: str) -> None: ...

    async def ledger_record(self, record: LaunchRecord) -> LaunchRecord:
        """Insert a launch before the provider call; an existing launch id returns the stored row."""
        ...

    async def ledger_update(
        self,
        launch_id: str,
        state: LaunchState,
        machine_id: str | None = None,
        detail: str | None = None,
    ) -> bool: ...

    async def ledger_list(self, include_closed: bool = False) -> list[LaunchRecord]: ...

    async def record_reconcile(self, record: ReconcileRecord) -> None:
        """Keep what the latest applied reconcile tick did, for operators (the console)."""
        ...

    async def last_reconcile(self) -> ReconcileRecord | None: ...

    async def wait_for_fleet_change(self, timeout_s: float) -> bool:
        """Sleep until the store may have work or a worker was left with no job (a watch loop
        ticks early on either), or the timeout passes. True if woken early."""
        ...
