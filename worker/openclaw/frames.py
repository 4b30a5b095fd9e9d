"""Wire shapes of the gateway's WebSocket RPC (protocol 4), and what their errors mean to a job.

Frames, as observed on openclaw 2026.9.6::

    server → {"type": "event", "event": "connect.challenge", "payload": {"nonce", "ts"}}
    client → {"type": "req", "id", "method": "connect", "params": {...}}
    server → {"type": "res", "id", "ok": true, "payload": {"type": "hello-ok", "protocol": 4, ...}}
    client → {"type": "req", "id", "method": "agent", "params": {"message", "agentId", "sessionKey",
              "idempotencyKey"}}
    server → {"type": "res", "id", "ok": true, "payload": {"runId", "status": "accepted"}}
    server → {"type": "event", ...}                      (task/agent/chat progress; many, ignored)
    server → {"type": "res", "id", "ok": true, "payload": {"runId", "status": "ok",
              "result": {"payloads": [{"text"}], "meta"}}}

A failed run ends with ``ok: false``, ``payload.status: "error"`` and ``error: {code, message}``.
Models accept unknown keys: the gateway adds fields often, and we read only what we need.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from worker.errors import (
    DeliveryAuthError,
    DeliveryConfigError,
    DeliveryError,
    DeliveryInterrupted,
    DeliveryProtocolError,
    DeliveryRejected,
    DeliveryServerError,
    DeliveryTimeout,
)

# Operator clients must speak the gateway's current protocol; 2026.9.6 accepts exactly 4
# (MIN_CLIENT_PROTOCOL_VERSION = PROTOCOL_VERSION = 4; v3 is only for nodes and restart probes, and a
# v3-only connect is refused with details.code PROTOCOL_MISMATCH). Our design notes said "v3":
# that predates the pinned release.
PROTOCOL_VERSION = 4

# How the gateway says that a restart took a turn away from its caller (observed on 2026.9.6): the
# turn was admitted by the process that died, and the new one either resumes it itself (a re-send
# is refused with SESSION_WORK_START_CHANGED, and that refusal is cached under the key) or holds it
# as an interrupted pending input (a re-send is refused: "Pending input ownership ended").
_INTERRUPTED_MARKERS = (
    "SESSION_WORK_START_CHANGED",
    "SESSION_WORK_START_INVALIDATED",
    "SESSION_RESTART_RECOVERY_TOMBSTONE",
    "Pending input ownership ended",
    "outside the current turn",
)


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True)


_M = TypeVar("_M", bound=_Wire)


class ErrorShape(_Wire):
    code: str = "UNKNOWN"
    message: str = ""
    details: dict[str, Any] | None = None
    retryable: bool | None = None
    retry_after_ms: int | None = None

    @property
    def detail_code(self) -> str:
        code = (self.details or {}).get("code")
        return code if isinstance(code, str) else ""


class ResFrame(_Wire):
    type: Literal["res"]
    id: str
    ok: bool
    payload: Any = None
    error: ErrorShape | None = None

    @property
    def status(self) -> str | None:
        status = self.payload.get("status") if isinstance(self.payload, dict) else None
        return status if isinstance(status, str) else None


class EventFrame(_Wire):
    type: Literal["event"]
    event: str
    payload: Any = None


class HelloOk(_Wire):
    type: Literal["hello-ok"]
    protocol: int


class ReplyPayload(_Wire):
    text: str | None = None


class AgentResult(_Wire):
    payloads: list[ReplyPayload] = []


class AgentFinal(_Wire):
    run_id: str | None = None
    status: str
    summary: str | None = None
    result: AgentResult | None = None

    def reply_text(self) -> str:
        # A turn may answer in several payloads (text blocks, media captions); media URLs are not
        # part of the Delivery seam yet. A silent turn (NO_REPLY) has no payloads: empty text.
        texts = [payload.text for payload in (self.result.payloads if self.result else []) if payload.text]
        return "\n\n".join(texts)


class WaitResult(_Wire):
    """``agent.wait``: ``status`` is "timeout" while the run is still going (or unknown)."""

    status: str
    error: str | None = None
    terminal_reply: ReplyPayload | None = None


class _EntryMeta(_Wire):
    run_id: str | None = None


class HistoryEntry(_Wire):
    """One transcript entry of ``chat.history``: user turns carry the ``idempotencyKey`` they were
    sent with (``<key>:user``), assistant turns the run that wrote them (``__openclaw.runId``)."""

    role: str
    content: Any = None
    idempotency_key: str | None = None
    stop_reason: str | None = None
    meta: _EntryMeta = Field(default_factory=_EntryMeta, alias="__openclaw")

    @property
    def run_id(self) -> str | None:
        return self.meta.run_id

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = self.content if isinstance(self.content, list) else []
        texts = [p.get("text") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
        return "\n\n".join(t for t in texts if isinstance(t, str) and t)


class PendingInput(_Wire):
    run_id: str | None = None
    state: str | None = None


class PendingInputs(_Wire):
    items: list[PendingInput] = []


class SessionHistory(_Wire):
    """``chat.history {sessionKey, limit}``: the newest transcript entries, oldest first, and the
    inputs the gateway accepted but never admitted to the transcript."""

    messages: list[HistoryEntry] = []
    pending_inputs: PendingInputs = Field(default_factory=PendingInputs)


def parse_frame(raw: str | bytes) -> ResFrame | EventFrame | None:
    """A server frame; None for frame types this client does not use (forward compatibility)."""
    try:
        data = json.loads(raw)
    except ValueError:
        raise DeliveryProtocolError(f"gateway sent a frame that is not JSON ({len(raw)} bytes)") from None
    if not isinstance(data, dict):
        raise DeliveryProtocolError(f"gateway sent a JSON {type(data).__name__}, not a frame object")
    kind = data.get("type")
    try:
        if kind == "res":
            return ResFrame.model_validate(data)
        if kind == "event":
            return EventFrame.model_validate(data)
    except ValidationError as exc:
        raise DeliveryProtocolError(f"gateway sent a malformed {kind} frame: {_first_problem(exc)}") from None
    return None


def parse_payload(model: type[_M], payload: object, what: str) -> _M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise DeliveryProtocolError(f"gateway sent a malformed {what}: {_first_problem(exc)}") from None


def error_from_frame(error: ErrorShape | None, doing: str) -> DeliveryError:
    """Classify an error frame; ``doing`` names the request for the message (never a secret)."""
    if error is None:
        return DeliveryProtocolError(f"gateway failed {doing} without an error object")
    text = f"gateway failed {doing}: {error.code}"
    if error.detail_code:
        text += f"/{error.detail_code}"
    if error.message:
        text += f": {error.message[:300]}"
    if (
        error.detail_code.startswith("AUTH_")
        or error.code in {"FORBIDDEN", "NOT_PAIRED"}
        or error.message.lower().startswith("unauthorized")
    ):
        return DeliveryAuthError(text)
    if error.detail_code == "PROTOCOL_MISMATCH":
        expected = (error.details or {}).get("expectedProtocol")
        return DeliveryConfigError(f"{text} (we speak {PROTOCOL_VERSION}, the gateway wants {expected})")
    if interrupted_by_restart(f"{error.detail_code} {error.message}"):
        return DeliveryInterrupted(text)
    if error.code == "AGENT_TIMEOUT":
        return DeliveryTimeout(text)
    # INVALID_REQUEST is also how the gateway reports a lost race on a new session; its message
    # then ends in "Retry." and trying again is exactly right.
    if error.retryable or error.code == "UNAVAILABLE" or error.message.rstrip().endswith("Retry."):
        return DeliveryServerError(text)
    if error.code == "INVALID_REQUEST":
        return DeliveryRejected(text)
    # A code this client does not know: let the queue's attempt limit decide, not a guess.
    return DeliveryServerError(text)


def interrupted_by_restart(text: str) -> bool:
    """Whether a gateway error (or a failed run's summary) says a restart took the turn away."""
    return any(marker in text for marker in _INTERRUPTED_MARKERS)


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "frame"
    return f"{where}: {first['msg']}"
