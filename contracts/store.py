"""The Store protocol: the one seam between the fleet and its shared state.

Every binding (the embedded SQLite store, the Convex binding) implements it with the same
semantics; ``tests/contract`` runs one suite against each. Method names are the contract's
function names in snake_case (``worker_claim`` ↔ ``workerClaim``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from contracts.models import (
    AgentProfile,
    AppendRequest,
    AppendResult,
    ClaimedJob,
    ControlState,
    Conversation,
    DeadLetter,
    DemandSnapshot,
    EnqueueRequest,
    FailRequest,
    FailResult,
    HydrationBundle,
    LaunchRecord,
    LaunchState,
    LeaseRef,
    MessageRecord,
    QueueStats,
    RedriveResult,
    ReleaseResult,
    SetWorkerStatusRequest,
    WorkerRecord,
    WorkerRegistration,
)


@runtime_checkable
class Store(Protocol):
    """Async access to the queue, the worker registry and the fleet's bookkeeping."""

    @property
    def name(self) -> str:
        """A human label for errors and logs (a path or a URL, never a credential)."""
        ...

    # ---- queue
    async def enqueue(self, request: EnqueueRequest) -> str:
        """Queue a message; the same (conversationId, externalMessageId) returns the first id."""
        ...

    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> ClaimedJob | None:
        """Lease the best due head message, or None. An empty claim refreshes the heartbeat."""
        ...

    async def worker_heartbeat(self, lease: LeaseRef) -> bool:
        """Extend a live lease. False means the lease is lost: stop the job."""
        ...

    async def worker_complete(self, lease: LeaseRef) -> bool: ...

    async def worker_fail(self, request: FailRequest) -> FailResult: ...

    async def worker_hydration_bundle(
        self, message_id: str, workspace_id: str = "default"
    ) -> HydrationBundle | None: ...

    async def worker_append_conversation_messages(self, request: AppendRequest) -> AppendResult: ...

    # ---- workers
    async def worker_register(self, registration: WorkerRegistration) -> WorkerRecord: ...

    async def worker_control_state(self, worker_id: str) -> ControlState:
        """Whether the worker must stop; a poll from an active worker refreshes its heartbeat."""
        ...

    async def fleet_set_worker_status(self, request: SetWorkerStatusRequest) -> bool: ...

    async def fleet_demand(self) -> DemandSnapshot: ...

    async def list_workers(self) -> list[WorkerRecord]: ...

    # ---- operator views and actions
    async def queue_stats(self) -> QueueStats: ...

    async def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]: ...

    async def redrive(self, message_id: str | None = None) -> RedriveResult:
        """Re-queue one dead letter, or every dead letter when ``message_id`` is None."""
        ...

    async def release_expired(self) -> ReleaseResult: ...

    async def get_message(self, message_id: str) -> MessageRecord | None: ...

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> Conversation | None: ...

    # ---- agents and secrets
    async def upsert_agent_profile(self, profile: AgentProfile) -> AgentProfile: ...

    async def get_agent_profile(self, agent_key: str) -> AgentProfile | None: ...

    async def import_secret(self, secret_ref: str, value: SecretStr) -> int:
        """Store a new active version of a secret and return its version number."""
        ...

    # ---- autoscaler bookkeeping
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

    # ---- waiting and time
    async def wait_for_work(self, timeout_s: float) -> bool:
        """Sleep until the store may have work, or the timeout passes. True if woken early."""
        ...

    async def now_ms(self) -> int:
        """The store's clock: every lease and schedule is measured against it."""
        ...

    async def aclose(self) -> None: ...
