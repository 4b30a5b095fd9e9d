"""The Store protocol, as far as it goes, on an unmodified agent-factory 3.1.x deployment.

Upstream exposes its worker API from the host module ``agentFactory`` (reference/agent-factory.md
§2) and its own worker calls it with no auth header. This store speaks exactly those functions
with exactly their argument names:

==============================  ========  ==============================================================
workerClaim                     mutation  {workerId, conversationId?} → job | null (no ``attempt``: reported as 1)
workerHeartbeat/Complete        mutation  {workerId, messageId, leaseId} → bool
workerFail                      mutation  {workerId, messageId, leaseId, errorMessage} → {requeued, deadLettered,
                                          nextScheduledFor|null}; no ``retryable``: upstream retries until maxAttempts
(workerRelease)                 —         upstream has none: nothing is sent (below)
workerHydrationBundle           query     {messageId, workspaceId} → upstream bundle, mapped to ours
workerControlState              query     {workerId} → {shouldStop}
workerAppendConversationMessages mutation {conversationId, workspaceId?, messages} (no per-message dedupe upstream)
enqueue                         mutation  flattened payload: {conversationId, agentKey, provider, …, priority?}
==============================  ========  ==============================================================

Releasing (giving a message back after an infrastructure fault) is not an upstream function. Upstream
counts an attempt only in ``workerFail``, never at claim or when a lease expires, so the release
here sends nothing and lets the lease run out: upstream's sweep then re-queues the message with its
attempts untouched, at the cost of its conversation waiting out the rest of the lease (up to 6
minutes upstream). The worker stops heartbeating it either way.
The one-call hot path is emulated with upstream's separate calls: a claim ``with_bundle`` is a
claim, then the hydration bundle and the control state; a complete with ``history`` and
``claim_next`` is the append, then the complete, then (when accepted) the next claim. The history
goes first, as upstream's own worker writes it: a complete whose answer was lost is refused when
sent again (upstream's complete is a bare boolean), so history written after it could be lost
with it. Upstream does not dedupe appends, so a complete sent again does not append again.
Heartbeat and complete answers carry no control state (upstream's are bare booleans).

Registering is a no-op (upstream registers a worker by its first claim; note that upstream tells
a worker it has no row for to stop). The store's clock is this machine's: upstream has no time
function. This store implements the worker role and enqueue (``contracts.roles.WorkerStore``,
``EnqueueStore``) and nothing else: upstream has no demand snapshot, ledger or operator views, and
asking for one of those roles is refused once, by :class:`UnsupportedByCompat`, where the store is
chosen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

import anyio
from pydantic import SecretStr

from contracts.convex.client import DEFAULT_RETRY, ConvexClient
from contracts.errors import InvalidInput, StoreFunctionError
from contracts.models import (
    DEFAULT_MAX_ATTEMPTS,
    AgentProfile,
    AppendRequest,
    AppendResult,
    Attachment,
    BridgeConfig,
    ClaimedJob,
    ClaimResult,
    CompleteResult,
    ControlState,
    EnqueueRequest,
    FailRequest,
    FailResult,
    HistoryMessage,
    HydrationBundle,
    LeaseRef,
    LeaseResult,
    MessagePayload,
    NextClaim,
    ReleaseRequest,
    ResolvedBridge,
    WorkerRecord,
    WorkerRegistration,
    to_wire,
)
from contracts.retry import RetryPolicy

UPSTREAM = "agent-factory 3.1"
DEFAULT_NAMESPACE = "agentFactory"
Compat = Literal["agent-factory-3.1"]
COMPAT_MODES: tuple[str, ...] = ("agent-factory-3.1",)
_PAYLOAD_KEYS = frozenset(MessagePayload.model_fields[name].alias or name for name in MessagePayload.model_fields)
_ATTACHMENT_KEYS = frozenset(Attachment.model_fields[name].alias or name for name in Attachment.model_fields)
_HISTORY_KEYS = ("role", "content", "at")


class UnsupportedByCompat(StoreFunctionError):
    """A command needs a store role that an upstream deployment does not have."""

    def __init__(self, store: str, role: str) -> None:
        super().__init__(
            store,
            role,
            f"{UPSTREAM} has no {role} functions; the compat store only speaks upstream's worker API "
            "(claim, heartbeat, complete, fail, hydration, control state, history, enqueue). "
            "Deploy the factory Convex module (contracts/convex/module) for the fleet and operator functions",
        )


def _upstream_payload(raw: dict[str, Any]) -> MessagePayload:
    """Upstream payloads, with any field our model does not know (a newer upstream) left out."""
    payload = {k: v for k, v in raw.items() if k in _PAYLOAD_KEYS}
    if isinstance(payload.get("attachments"), list):
        payload["attachments"] = [
            {k: v for k, v in a.items() if k in _ATTACHMENT_KEYS} for a in payload["attachments"] if isinstance(a, dict)
        ]
    return MessagePayload.model_validate(payload)


class AgentFactoryCompatStore:
    """The worker role and enqueue on an unmodified agent-factory 3.1.x deployment."""

    def __init__(
        self,
        url: str,
        *,
        compat: Compat = "agent-factory-3.1",
        auth_token: SecretStr | str | None = None,
        deploy_key: SecretStr | str | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        timeout_s: float = 20.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        wait_poll_s: float = 2.0,
        workspace_id: str = "default",
    ) -> None:
        if compat not in COMPAT_MODES:
            raise InvalidInput("FACTORY_CONVEX_COMPAT", f"{compat!r} is not one of {', '.join(COMPAT_MODES)}")
        if auth_token is not None or deploy_key is not None:
            raise InvalidInput("auth_token", f"{UPSTREAM} workers send no Authorization header; drop the token or key")
        if wait_poll_s <= 0:
            raise InvalidInput("wait_poll_s", "must be positive")
        self.compat = compat
        self.wait_poll_s = wait_poll_s
        self.workspace_id = workspace_id
        self._client = ConvexClient(url, namespace=namespace, timeout_s=timeout_s, retry=retry)
        self._claimed_once: set[str] = set()
        # The conversation of each message claimed here and not yet completed: upstream's
        # complete does not name it, and the history a complete carries needs it.
        self._in_flight: dict[str, str] = {}
        # Messages whose history a complete already appended (the complete may be sent again).
        self._appended: set[str] = set()

    @property
    def name(self) -> str:
        return f"convex:{self._client.url} ({UPSTREAM})"

    @property
    def url(self) -> str:
        return self._client.url

    async def _query(self, function: str, args: Mapping[str, Any]) -> Any:
        return await self._client.query(function, args)

    async def _mutation(self, function: str, args: Mapping[str, Any], *, retry: bool) -> Any:
        return await self._client.mutation(function, args, retry=retry)

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

    @overload
    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> ClaimedJob | None: ...

    @overload
    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: Literal[True]
    ) -> ClaimResult: ...

    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: bool = False
    ) -> ClaimedJob | ClaimResult | None:
        job = await self._claim(worker_id, conversation_id)
        if not with_bundle:
            return job
        bundle = None if job is None else await self.worker_hydration_bundle(job.message_id, self.workspace_id)
        control = await self.worker_control_state(worker_id)
        return ClaimResult(control=control, now=await self.now_ms(), job=job, bundle=bundle)

    async def _claim(self, worker_id: str, conversation_id: str | None) -> ClaimedJob | None:
        args = {"workerId": worker_id, **({"conversationId": conversation_id} if conversation_id is not None else {})}
        job = await self._mutation("workerClaim", args, retry=False)
        if job is None:
            return None
        self._claimed_once.add(worker_id)
        self._in_flight[job["messageId"]] = job["conversationId"]
        return ClaimedJob(
            message_id=job["messageId"],
            conversation_id=job["conversationId"],
            agent_key=job["agentKey"],
            lease_id=job["leaseId"],
            lease_expires_at=job["leaseExpiresAt"],
            attempt=1,  # upstream does not report (or count at claim) the delivery number
            payload=_upstream_payload(job["payload"]),
        )

    async def worker_heartbeat(self, lease: LeaseRef) -> LeaseResult:
        return _lease_answer(await self._mutation("workerHeartbeat", to_wire(lease), retry=True))

    async def worker_complete(
        self,
        lease: LeaseRef,
        *,
        history: Sequence[HistoryMessage] | None = None,
        claim_next: NextClaim | None = None,
    ) -> CompleteResult:
        appended = None
        if history and lease.message_id not in self._appended:
            conversation_id = self._in_flight.get(lease.message_id)
            if conversation_id is None:
                raise InvalidInput("history", "compat mode carries history only for a message this store claimed")
            request = AppendRequest(
                conversation_id=conversation_id, messages=list(history), message_id=lease.message_id
            )
            appended = await self.worker_append_conversation_messages(request)
            self._appended.add(lease.message_id)
        done = _lease_answer(await self._mutation("workerComplete", to_wire(lease), retry=True))
        self._appended.discard(lease.message_id)
        result = CompleteResult(ok=done.ok, refused=done.refused)
        if not done.ok:
            return result
        self._in_flight.pop(lease.message_id, None)
        if appended is not None:
            result = result.model_copy(update={"appended": appended})
        if claim_next is not None:
            claimed = await self.worker_claim(lease.worker_id, claim_next.conversation_id, with_bundle=True)
            if not claim_next.with_bundle:
                claimed = claimed.model_copy(update={"bundle": None})
            result = result.model_copy(update={"next": claimed})
        return result

    async def worker_fail(self, request: FailRequest) -> FailResult:
        self._in_flight.pop(request.lease.message_id, None)
        self._appended.discard(request.lease.message_id)
        args = {**to_wire(request.lease), "errorMessage": request.error_message}
        # Fenced by the lease upstream too: a replay changes nothing (it reports neither outcome).
        value = await self._mutation("workerFail", args, retry=True)
        result = FailResult.model_validate({k: v for k, v in value.items() if v is not None})
        if not result.requeued and not result.dead_lettered:
            return result.model_copy(update={"refused": "lease_lost"})
        return result

    async def worker_release(self, request: ReleaseRequest) -> LeaseResult:
        """Nothing to call upstream: the lease runs out and upstream's sweep re-queues the message
        without counting an attempt (see the module docstring). Accepted, as that is the outcome."""
        return LeaseResult(ok=True, now=await self.now_ms())

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

    async def wait_for_work(self, timeout_s: float, conversation_id: str | None = None) -> bool:
        await anyio.sleep(max(0.0, min(timeout_s, self.wait_poll_s)))  # upstream polls every 2 s
        return False

    async def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def aclose(self) -> None:
        await self._client.aclose()


def _lease_answer(value: Any) -> LeaseResult:
    """Upstream answers a bare boolean and keeps its reasons to itself."""
    if value is True:
        return LeaseResult(ok=True)
    return LeaseResult(ok=False, refused="lease_lost")


def _bundle(raw: dict[str, Any]) -> HydrationBundle:
    """Upstream's hydration bundle (§6.3) in our shape: the profile is synthesised from what
    upstream sends (agent key, bot identity, bridge settings), and its resolved bridge settings
    become ours. Upstream has no host allow-list, so bridge calls stay refused until a profile
    names one (the worker never calls a host nobody allowed)."""
    bridge = raw.get("bridgeRuntimeConfig") or {}
    state = raw.get("conversationState") or {}

    def text(key: str) -> str | None:
        value = bridge.get(key)
        return str(value) if value else None

    resolved = None
    if bridge:
        key, app_map = text("serviceKey"), text("appBaseUrlMapJson")
        resolved = ResolvedBridge(
            base_url=text("baseUrl"),
            service_id=text("serviceId"),
            service_key=SecretStr(key) if key else None,
            app_key=text("appKey"),
            app_base_url_map_json=SecretStr(app_map) if app_map else None,
        )
    profile = AgentProfile(
        agent_key=raw["agentKey"],
        bot_identity=bridge.get("botIdentity"),
        bridge_config=BridgeConfig(
            base_url=text("baseUrl"),
            service_id=text("serviceId"),
            app_key=text("appKey"),
            service_key_secret_ref=text("serviceKeySecretRef"),
        )
        if bridge
        else None,
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
        bridge=resolved,
    )
