"""The Store protocol, as far as it goes, on an unmodified agent-factory 3.1.x deployment.

Upstream exposes its worker API from the host module ``agentFactory`` (reference/agent-factory.md
§2) and its own worker calls it with no auth header. This store speaks exactly those functions
with exactly their argument names:

==============================  ========  ==============================================================
workerClaim                     mutation  {workerId, conversationId?} → job | null (no ``attempt``: reported as 1)
workerHeartbeat/Complete        mutation  {workerId, messageId, leaseId} → bool
workerFail                      mutation  {workerId, messageId, leaseId, errorMessage} → {requeued, deadLettered,
                                          nextScheduledFor|null}; no ``retryable``: upstream retries until maxAttempts
workerHydrationBundle           query     {messageId, workspaceId} → upstream bundle, mapped to ours
workerControlState              query     {workerId} → {shouldStop}
workerAppendConversationMessages mutation {conversationId, workspaceId?, messages} (no per-message dedupe upstream)
enqueue                         mutation  flattened payload: {conversationId, agentKey, provider, …, priority?}
==============================  ========  ==============================================================

Registering is a no-op (upstream registers a worker by its first claim; note that upstream tells
a worker it has no row for to stop). The store's clock is this machine's: upstream has no time
function. Everything upstream lacks (the demand snapshot, the ledger, operator views, …) raises
:class:`UnsupportedByCompat`.
"""

from __future__ import annotations

import time
from typing import Any, NoReturn

import anyio
from pydantic import SecretStr

from contracts.convex.client import DEFAULT_RETRY, RetryPolicy
from contracts.convex.store import DEFAULT_NAMESPACE, Compat, ConvexStore
from contracts.errors import InvalidInput, StoreFunctionError
from contracts.models import (
    DEFAULT_MAX_ATTEMPTS,
    AgentProfile,
    AppendRequest,
    AppendResult,
    Attachment,
    ClaimedJob,
    ControlState,
    Conversation,
    DeadLetter,
    DemandSnapshot,
    EnqueueRequest,
    FailRequest,
    FailResult,
    HistoryMessage,
    HydrationBundle,
    LaunchRecord,
    LaunchState,
    LeaseRef,
    MessagePayload,
    MessageRecord,
    QueueStats,
    RedriveResult,
    ReleaseResult,
    SetWorkerStatusRequest,
    WorkerRecord,
    WorkerRegistration,
    to_wire,
)

UPSTREAM = "agent-factory 3.1"
_PAYLOAD_KEYS = frozenset(MessagePayload.model_fields[name].alias or name for name in MessagePayload.model_fields)
_ATTACHMENT_KEYS = frozenset(Attachment.model_fields[name].alias or name for name in Attachment.model_fields)
_HISTORY_KEYS = ("role", "content", "at")


class UnsupportedByCompat(StoreFunctionError):
    """The upstream deployment has no such function; the factory module does."""

    def __init__(self, store: str, function: str) -> None:
        super().__init__(
            store,
            function,
            f"{UPSTREAM} does not provide {function}; the compat store only speaks upstream's worker API "
            "(claim, heartbeat, complete, fail, hydration, control state, history, enqueue). "
            "Deploy the factory Convex module (contracts/convex/module) for the fleet functions",
        )


def _upstream_payload(raw: dict[str, Any]) -> MessagePayload:
    """Upstream payloads, with any field our model does not know (a newer upstream) left out."""
    payload = {k: v for k, v in raw.items() if k in _PAYLOAD_KEYS}
    if isinstance(payload.get("attachments"), list):
        payload["attachments"] = [
            {k: v for k, v in a.items() if k in _ATTACHMENT_KEYS} for a in payload["attachments"] if isinstance(a, dict)
        ]
    return MessagePayload.model_validate(payload)


class AgentFactoryCompatStore(ConvexStore):
    """``ConvexStore(url, compat="agent-factory-3.1")``: see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        auth_token: SecretStr | str | None = None,
        deploy_key: SecretStr | str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 20.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        compat: Compat | None = "agent-factory-3.1",
        wait_poll_s: float = 2.0,
        workspace_id: str = "default",
    ) -> None:
        if auth_token is not None or deploy_key is not None:
            raise InvalidInput("auth_token", f"{UPSTREAM} workers send no Authorization header; drop the token or key")
        super().__init__(
            url, namespace=namespace, timeout_s=timeout_s, retry=retry, compat=compat, wait_poll_s=wait_poll_s
        )
        self.workspace_id = workspace_id
        self._claimed_once: set[str] = set()

    def _unsupported(self, function: str) -> NoReturn:
        raise UnsupportedByCompat(self.name, function)

    # ---------------------------------------------------------------- the upstream worker API

    async def enqueue(self, request: EnqueueRequest) -> str:
        if request.scheduled_for is not None:
            raise InvalidInput("scheduledFor", f"{UPSTREAM}'s enqueue has no scheduledFor")
        if request.max_attempts != DEFAULT_MAX_ATTEMPTS:
            raise InvalidInput("maxAttempts", f"{UPSTREAM}'s enqueue always allows {DEFAULT_MAX_ATTEMPTS} attempts")
        args = {
            "conversationId": request.conversation_id,
            "agentKey": request.agent_key,
            **to_wire(request.payload),
            "priority": request.priority,
        }
        # Upstream does not deduplicate enqueues: never retried.
        return str(await self._mutation("enqueue", args, retry=False))

    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> ClaimedJob | None:
        args = {"workerId": worker_id, **({"conversationId": conversation_id} if conversation_id is not None else {})}
        job = await self._mutation("workerClaim", args, retry=False)
        if job is None:
            return None
        self._claimed_once.add(worker_id)
        return ClaimedJob(
            message_id=job["messageId"],
            conversation_id=job["conversationId"],
            agent_key=job["agentKey"],
            lease_id=job["leaseId"],
            lease_expires_at=job["leaseExpiresAt"],
            attempt=1,  # upstream does not report (or count at claim) the delivery number
            payload=_upstream_payload(job["payload"]),
        )

    async def worker_fail(self, request: FailRequest) -> FailResult:
        lease = LeaseRef(worker_id=request.worker_id, message_id=request.message_id, lease_id=request.lease_id)
        args = {**to_wire(lease), "errorMessage": request.error_message}
        # Fenced by the lease upstream too: a replay changes nothing (it reports neither outcome).
        value = await self._mutation("workerFail", args, retry=True)
        return FailResult.model_validate({k: v for k, v in value.items() if v is not None})

    async def worker_hydration_bundle(self, message_id: str, workspace_id: str = "default") -> HydrationBundle | None:
        value = await self._query("workerHydrationBundle", {"messageId": message_id, "workspaceId": workspace_id})
        return None if value is None else _bundle(value)

    async def worker_append_conversation_messages(self, request: AppendRequest) -> AppendResult:
        messages = [{k: v for k, v in to_wire(m).items() if k in _HISTORY_KEYS} for m in request.messages]
        args = {"conversationId": request.conversation_id, "workspaceId": self.workspace_id, "messages": messages}
        # Upstream keeps no per-message record of appends: a retry could append twice.
        return AppendResult.model_validate(await self._mutation("workerAppendConversationMessages", args, retry=False))

    async def worker_register(self, registration: WorkerRegistration) -> WorkerRecord:
        now = await self.now_ms()  # upstream registers a worker by its first claim
        return WorkerRecord(
            worker_id=registration.worker_id,
            provider=registration.provider,
            status="active",
            registered_at=now,
            heartbeat_at=now,
            machine_ref=registration.machine_ref,
            launch_id=registration.launch_id,
            capabilities=list(registration.capabilities or []),
        )

    async def worker_control_state(self, worker_id: str) -> ControlState:
        if worker_id not in self._claimed_once:
            # Upstream has no workerRegister: a worker's row appears with its first claim, and until
            # then workerControlState answers "stop" (missing_worker). Do not ask before that.
            return ControlState(should_stop=False)
        value = await self._query("workerControlState", {"workerId": worker_id})
        return ControlState(should_stop=bool(value["shouldStop"]))

    async def wait_for_work(self, timeout_s: float) -> bool:
        await anyio.sleep(max(0.0, min(timeout_s, self.wait_poll_s)))  # upstream polls every 2 s
        return False

    async def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    # ---------------------------------------------------------------- not in upstream

    async def fleet_set_worker_status(self, request: SetWorkerStatusRequest) -> bool:
        self._unsupported("fleetSetWorkerStatus")

    async def fleet_demand(self) -> DemandSnapshot:
        self._unsupported("fleetDemand")

    async def list_workers(self) -> list[WorkerRecord]:
        self._unsupported("listWorkers")

    async def queue_stats(self) -> QueueStats:
        self._unsupported("queueStats")

    async def list_dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        self._unsupported("listDeadLetters")

    async def redrive(self, message_id: str | None = None) -> RedriveResult:
        self._unsupported("redrive")

    async def release_expired(self) -> ReleaseResult:
        self._unsupported("releaseExpired")

    async def get_message(self, message_id: str) -> MessageRecord | None:
        self._unsupported("getMessage")

    async def get_conversation(self, conversation_id: str, history_limit: int = 50) -> Conversation | None:
        self._unsupported("getConversation")

    async def upsert_agent_profile(self, profile: AgentProfile) -> AgentProfile:
        self._unsupported("upsertAgentProfile")

    async def get_agent_profile(self, agent_key: str) -> AgentProfile | None:
        self._unsupported("getAgentProfile")

    async def import_secret(self, secret_ref: str, value: SecretStr) -> int:
        self._unsupported("importSecret")

    async def acquire_reconcile_lock(self, holder: str, ttl_ms: int) -> bool:
        self._unsupported("acquireReconcileLock")

    async def release_reconcile_lock(self, holder: str) -> None:
        self._unsupported("releaseReconcileLock")

    async def ledger_record(self, record: LaunchRecord) -> LaunchRecord:
        self._unsupported("ledgerRecord")

    async def ledger_update(
        self, launch_id: str, state: LaunchState, machine_id: str | None = None, detail: str | None = None
    ) -> bool:
        self._unsupported("ledgerUpdate")

    async def ledger_list(self, include_closed: bool = False) -> list[LaunchRecord]:
        self._unsupported("ledgerList")


def _bundle(raw: dict[str, Any]) -> HydrationBundle:
    """Upstream's hydration bundle (§6.3) in our shape: the profile is synthesised from what
    upstream sends (agent key, bot identity, bridge settings); bridge keys become secrets."""
    bridge = raw.get("bridgeRuntimeConfig") or {}
    state = raw.get("conversationState") or {}
    secret_keys = {"serviceKey", "appBaseUrlMapJson"}
    bridge_config = {k: str(v) for k, v in bridge.items() if v is not None and k not in secret_keys}
    secrets = {}
    if bridge.get("serviceKey"):
        secrets[str(bridge.get("serviceKeySecretRef") or "agent-bridge.serviceKey")] = SecretStr(
            str(bridge["serviceKey"])
        )
    if bridge.get("appBaseUrlMapJson"):
        secrets["agent-bridge.baseUrlMapJson"] = SecretStr(str(bridge["appBaseUrlMapJson"]))
    profile = AgentProfile(
        agent_key=raw["agentKey"],
        bot_identity=bridge.get("botIdentity"),
        bridge_config=bridge_config or None,
    )
    token = raw.get("telegramBotToken")
    return HydrationBundle(
        message_id=raw["messageId"],
        conversation_id=raw["conversationId"],
        agent_key=raw["agentKey"],
        payload=_upstream_payload(raw["payload"]),
        profile=profile,
        history=[
            HistoryMessage.model_validate({k: v for k, v in turn.items() if k in _HISTORY_KEYS})
            for turn in state.get("contextHistory") or []
        ],
        telegram_bot_token=SecretStr(token) if token else None,
        secrets=secrets,
    )
