"""A loopback stand-in for an unmodified agent-factory 3.1.x deployment's worker API.

It answers Convex's HTTP API (``POST /api/query|mutation`` with ``{path, args, format?}``) for the
host functions upstream's ``exposeApi`` publishes under the ``agentFactory`` namespace
(reference/agent-factory.md §2), in exactly upstream's result shapes, with upstream's queue rules
where they matter to a worker: claim inserts the worker row, 360 s leases, no attempt counted at
claim, fail counts the attempt and backs off, complete and heartbeat fence on lease and worker
but not on expiry, control state says stop for an unknown, inactive or stale worker.

Every request is checked the way Convex's validators would check it, and any difference from
what upstream's own worker sends is recorded in ``violations`` (and answered like a validator
error): an Authorization header, an unknown or missing argument, a null anywhere in the args,
the wrong function kind.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tests.fakes._server import FaultyServer, Request, Response

Kind = Literal["query", "mutation"]
LEASE_MS = 360_000
STALE_MS = 420_000


@dataclass(frozen=True)
class Signature:
    kind: Kind
    required: frozenset[str]
    optional: frozenset[str] = frozenset()


def _sig(kind: Kind, required: str, optional: str = "") -> Signature:
    return Signature(kind, frozenset(required.split()), frozenset(optional.split()))


LEASE_ARGS = "workerId messageId leaseId"
SIGNATURES: dict[str, Signature] = {
    "enqueue": _sig(
        "mutation",
        "conversationId agentKey provider providerUserId messageText",
        "externalMessageId rawUpdateJson metadata attachments priority providerConfig",
    ),
    "workerClaim": _sig("mutation", "workerId", "conversationId"),
    "workerHeartbeat": _sig("mutation", LEASE_ARGS),
    "workerComplete": _sig("mutation", LEASE_ARGS),
    "workerFail": _sig("mutation", LEASE_ARGS + " errorMessage"),
    "workerHydrationBundle": _sig("query", "messageId workspaceId"),
    "workerControlState": _sig("query", "workerId"),
    "workerConversationHasQueued": _sig("query", "conversationId"),
    "workerAppendConversationMessages": _sig("mutation", "conversationId messages", "workspaceId"),
}
PAYLOAD_KEYS = ("provider", "providerUserId", "messageText", "externalMessageId", "rawUpdateJson", "metadata")


@dataclass
class Message:
    id: str
    conversation_id: str
    agent_key: str
    payload: dict[str, Any]
    priority: int
    scheduled_for: int
    order: int
    status: str = "queued"
    attempts: int = 0
    max_attempts: int = 5
    lease_id: str | None = None
    lease_expires_at: int | None = None
    claimed_by: str | None = None
    last_error: str | None = None


@dataclass
class Worker:
    status: str = "active"
    heartbeat_at: int = 0


@dataclass
class ConversationState:
    agent_key: str
    history: list[dict[str, Any]] = field(default_factory=list)
    lock_expires_at: int | None = None


def _nulls(value: Any, where: str = "args") -> list[str]:
    if value is None:
        return [where]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nulls(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _nulls(v, f"{where}[{i}]")]
    return []


class AgentFactoryApi(FaultyServer):
    """The upstream worker API on loopback. ``now_ms`` is the deployment's clock (settable)."""

    def __init__(self, namespace: str = "agentFactory", now_ms: Callable[[], int] | None = None) -> None:
        super().__init__()
        self.namespace = namespace
        self.now_ms = now_ms or (lambda: time.time_ns() // 1_000_000)
        self.violations: list[str] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: dict[str, Message] = {}
        self.conversations: dict[str, ConversationState] = {}
        self.workers: dict[str, Worker] = {}
        self.agents = {"default": "bot-token-default"}
        self._ids = itertools.count(1)

    # -- FaultyServer hooks ---------------------------------------------------------------------

    def endpoint(self, method: str, path: str) -> str | None:
        return {"/api/query": "query", "/api/mutation": "mutation"}.get(path) if method == "POST" else None

    def authorized(self, request: Request) -> Response | None:
        if "authorization" in request.headers:
            self.violations.append("an Authorization header was sent (upstream's worker sends none)")
        return None

    def route(self, endpoint: str, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        problem = self._check(endpoint, body)
        if problem is not None:
            self.violations.append(problem)
            return Response(200, {"status": "error", "errorMessage": f"[Request ID: fake] Server Error\n{problem}"})
        function = str(body["path"]).split(":", 1)[1]
        args: dict[str, Any] = body["args"]
        self.calls.append((function, args))
        handler = getattr(self, f"_fn_{function}")
        try:
            value = handler(args, self.now_ms())
        except ValueError as exc:
            return Response(
                200, {"status": "error", "errorMessage": f"[Request ID: fake] Server Error\nUncaught Error: {exc}"}
            )
        return Response(200, {"status": "success", "value": value})

    def _check(self, kind: str, body: dict[str, Any]) -> str | None:
        extra = set(body) - {"path", "args", "format"}
        if extra:
            return f"unexpected body keys {sorted(extra)}"
        path = body.get("path")
        if not isinstance(path, str) or not path.startswith(self.namespace + ":"):
            return f"Could not find public function for '{path}'."
        function = path.split(":", 1)[1]
        sig = SIGNATURES.get(function)
        if sig is None:
            return f"Could not find public function for '{path}'."
        if sig.kind != kind:
            return f"Trying to execute {path} as {kind.title()}, but it is defined as {sig.kind.title()}."
        args = body.get("args")
        if not isinstance(args, dict):
            return f"{function}: args must be an object"
        nulls = _nulls(args)
        if nulls:
            return f"ArgumentValidationError: {function}: null at {', '.join(nulls)} (optional args are omitted)"
        unknown = set(args) - sig.required - sig.optional
        if unknown:
            return f"ArgumentValidationError: {function}: unknown argument(s) {sorted(unknown)}"
        missing = sig.required - set(args)
        if missing:
            return f"ArgumentValidationError: {function}: missing argument(s) {sorted(missing)}"
        return None

    # -- upstream functions ---------------------------------------------------------------------

    def _fn_enqueue(self, a: dict[str, Any], now: int) -> str:
        if a["agentKey"] not in self.agents:
            raise ValueError(f"Agent profile '{a['agentKey']}' not found or disabled")
        conv = self.conversations.setdefault(a["conversationId"], ConversationState(a["agentKey"]))
        if conv.agent_key != a["agentKey"]:
            raise ValueError("conversation belongs to another agent")
        payload = {k: a[k] for k in (*PAYLOAD_KEYS, "attachments") if k in a}
        message_id = f"m{next(self._ids)}"
        self.messages[message_id] = Message(
            message_id,
            a["conversationId"],
            a["agentKey"],
            payload,
            priority=max(0, min(100, int(a.get("priority", 50)))),
            scheduled_for=now,
            order=len(self.messages),
        )
        return message_id

    def _fn_workerClaim(self, a: dict[str, Any], now: int) -> dict[str, Any] | None:
        worker = self.workers.get(a["workerId"])
        if worker is not None and worker.status != "active":
            return None
        due = sorted(
            (m for m in self.messages.values() if m.status == "queued" and m.scheduled_for <= now),
            key=lambda m: (-m.priority, m.scheduled_for, m.order),
        )
        for m in due[:25]:
            if "conversationId" in a and a["conversationId"] != m.conversation_id:
                continue
            conv = self.conversations[m.conversation_id]
            if conv.lock_expires_at is not None and conv.lock_expires_at > now:
                continue
            m.status, m.lease_id, m.claimed_by = "processing", f"{now}-{next(self._ids)}", a["workerId"]
            m.lease_expires_at = conv.lock_expires_at = now + LEASE_MS
            self.workers.setdefault(a["workerId"], Worker()).heartbeat_at = now
            return {
                "messageId": m.id,
                "conversationId": m.conversation_id,
                "agentKey": m.agent_key,
                "leaseId": m.lease_id,
                "leaseExpiresAt": m.lease_expires_at,
                "payload": m.payload,
            }
        return None

    def _owned(self, a: dict[str, Any]) -> Message | None:
        m = self.messages.get(a["messageId"])
        ok = m is not None and m.status == "processing" and m.lease_id == a["leaseId"] and m.claimed_by == a["workerId"]
        return m if ok else None

    def _fn_workerHeartbeat(self, a: dict[str, Any], now: int) -> bool:
        m = self._owned(a)
        if m is None:
            return False
        m.lease_expires_at = self.conversations[m.conversation_id].lock_expires_at = now + LEASE_MS
        self.workers.setdefault(a["workerId"], Worker()).heartbeat_at = now
        return True

    def _settle(self, m: Message, now: int) -> None:
        if m.claimed_by is not None:
            self.workers.setdefault(m.claimed_by, Worker()).heartbeat_at = now
        m.lease_id = m.claimed_by = m.lease_expires_at = None
        self.conversations[m.conversation_id].lock_expires_at = None

    def _fn_workerComplete(self, a: dict[str, Any], now: int) -> bool:
        m = self._owned(a)
        if m is None:
            return False
        m.status = "done"
        self._settle(m, now)
        return True

    def _fn_workerFail(self, a: dict[str, Any], now: int) -> dict[str, Any]:
        m = self._owned(a)
        if m is None:
            return {"requeued": False, "deadLettered": False, "nextScheduledFor": None}
        m.attempts += 1
        m.last_error = a["errorMessage"]
        self._settle(m, now)
        if m.attempts >= m.max_attempts:
            m.status = "dead_letter"
            return {"requeued": False, "deadLettered": True, "nextScheduledFor": None}
        m.status, m.scheduled_for = "queued", now + 1_000 * 2 ** (m.attempts - 1)
        return {"requeued": True, "deadLettered": False, "nextScheduledFor": m.scheduled_for}

    def _fn_workerHydrationBundle(self, a: dict[str, Any], now: int) -> dict[str, Any] | None:
        m = self.messages.get(a["messageId"])
        if m is None or m.status != "processing":
            return None
        conv = self.conversations[m.conversation_id]
        return {
            "messageId": m.id,
            "conversationId": m.conversation_id,
            "agentKey": m.agent_key,
            "payload": m.payload,
            "conversationState": {"contextHistory": list(conv.history), "pendingToolCalls": []},
            "telegramBotToken": self.agents.get(m.agent_key),
            "bridgeRuntimeConfig": None,
        }

    def _fn_workerControlState(self, a: dict[str, Any], now: int) -> dict[str, Any]:
        w = self.workers.get(a["workerId"])
        return {"shouldStop": w is None or w.status != "active" or w.heartbeat_at <= now - STALE_MS}

    def _fn_workerConversationHasQueued(self, a: dict[str, Any], now: int) -> bool:
        return any(m.status == "queued" and m.conversation_id == a["conversationId"] for m in self.messages.values())

    def _fn_workerAppendConversationMessages(self, a: dict[str, Any], now: int) -> dict[str, Any]:
        conv = self.conversations.get(a["conversationId"])
        if conv is None:
            return {"updated": False, "messageCount": 0}
        for turn in a["messages"]:
            conv.history.append({"role": turn["role"], "content": turn["content"], "at": turn.get("at", now)})
        return {"updated": True, "messageCount": len(conv.history)}
