"""Frozen wire models for every function of the queue contract.

Python names are snake_case; the wire is camelCase (``conversation_id`` ↔ ``conversationId``).
Optional keys are omitted on the wire, never sent as null: serialize with :func:`to_wire`.

Our own request messages forbid unknown fields, so a typo is an error instead of a silently
ignored key. Every time is epoch milliseconds from the store's clock.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.alias_generators import to_camel

from contracts.errors import InvalidInput

MAX_MESSAGE_BYTES = 64 * 1024
# Ids (conversation, agent, worker, external message, secret ref, …) are short, printable names.
MAX_ID_CHARS = 256
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 100, 50
DEFAULT_MAX_ATTEMPTS = 5
# The most rows one operator view returns (dead letters, history): the Convex module's page too.
MAX_PAGE = 1000
# 9999-12-31T23:59:59.999Z: a time no store, clock or SQLite integer chokes on.
MAX_EPOCH_MS = 253_402_300_799_999

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_PLAIN_ID = re.compile("[^\x00-\x1f\x7f-\x9f\ud800-\udfff]+")


def check_utf8(value: str) -> str:
    """Refuse text that cannot be stored as UTF-8 (lone surrogates: bytes that were not UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not UTF-8 text; send it in UTF-8") from None
    return value


def check_id(value: str) -> str:
    """An id: 1-256 characters, not blank, no control characters, UTF-8."""
    if len(value) <= MAX_ID_CHARS and _PLAIN_ID.fullmatch(value) and not value.isspace():
        return value  # the common case, checked at C speed: ids are on every lease call
    if not value.strip():
        raise ValueError("must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise ValueError(f"is {len(value)} characters long; the limit is {MAX_ID_CHARS}")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters (newlines, tabs, escapes)")
    return check_utf8(value)


def require_id(field: str, value: str) -> str:
    """:func:`check_id` for an argument outside a model: a refusal names ``field``."""
    try:
        return check_id(value)
    except ValueError as exc:
        raise InvalidInput(field, str(exc)) from None


def require_page(field: str, value: int) -> int:
    """A page size for an operator view: 0 to :data:`MAX_PAGE` rows."""
    if isinstance(value, bool) or not 0 <= value <= MAX_PAGE:
        raise InvalidInput(field, f"must be between 0 and {MAX_PAGE}, got {value}")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _within_64k(value: str) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("is not UTF-8 text; send it in UTF-8") from None
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(
            f"is {size} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (64 KiB): split the message or send a file"
        )
    return value


NonEmpty = Annotated[str, AfterValidator(_not_blank)]
Id = Annotated[str, AfterValidator(check_id)]
MessageText = Annotated[str, AfterValidator(_within_64k)]
Priority = Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY)]
EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS)]

MessageStatus = Literal["queued", "processing", "done", "dead_letter"]
WorkerStatus = Literal["active", "draining", "stopping", "stopped"]
HistoryRole = Literal["system", "user", "assistant", "tool"]
AttachmentKind = Literal["photo", "video", "audio", "voice", "document"]


class WireModel(BaseModel):
    """Base of our own messages: frozen, camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_by_name=True,
        validate_by_alias=True,
        ser_json_bytes="base64",
        # An infinite or NaN float is never a value anyone meant.
        allow_inf_nan=False,
    )


def to_wire(model: BaseModel) -> dict[str, Any]:
    """The JSON-ready wire form: camelCase keys, optional keys omitted rather than null."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- payloads


class Attachment(WireModel):
    kind: AttachmentKind
    status: Literal["ready", "expired"] = "ready"
    storage_id: str | None = None
    telegram_file_id: str | None = None
    file_name: str | None = None
    mime_type: str | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    expires_at: EpochMs | None = None
    download_url: str | None = None


class MessagePayload(WireModel):
    provider: Id
    provider_user_id: Id
    # Declared before the text, which may be empty only when attachments carry the message (a
    # photo without a caption): the text's validator reads them.
    attachments: list[Attachment] | None = None
    message_text: MessageText
    # Omit it to queue without dedupe; an empty one would dedupe every message against the first.
    external_message_id: Id | None = None
    raw_update_json: str | None = None
    metadata: dict[str, str] | None = None

    @field_validator("message_text")
    @classmethod
    def _says_something(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip() and not info.data.get("attachments"):
            raise ValueError("must not be empty (a message without attachments needs text)")
        return value


class EnqueueRequest(WireModel):
    conversation_id: Id
    agent_key: Id
    payload: MessagePayload
    priority: Priority = DEFAULT_PRIORITY
    scheduled_for: EpochMs | None = None
    max_attempts: int = Field(default=DEFAULT_MAX_ATTEMPTS, ge=1, le=1000)


# --------------------------------------------------------------------------- workers


class MachineRef(WireModel):
    machine_id: Id
    app_name: str | None = None
    region: str | None = None


class WorkerRegistration(WireModel):
    worker_id: Id
    provider: Id
    machine_ref: MachineRef | None = None
    launch_id: Id | None = None
    capabilities: list[str] | None = None
    # The one conversation this worker serves (affinity mode): the planner counts it as that
    # conversation's worker.
    conversation_id: str | None = None


class WorkerRecord(WireModel):
    worker_id: str
    provider: str
    status: WorkerStatus
    registered_at: EpochMs
    heartbeat_at: EpochMs
    status_reason: str | None = None
    status_since: EpochMs | None = None
    machine_ref: MachineRef | None = None
    launch_id: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    last_claim_at: EpochMs | None = None
    busy_since: EpochMs | None = None
    idle_since: EpochMs | None = None
    # The conversation it last claimed from.
    conversation_id: str | None = None
    # The one conversation it serves, when launched for it (affinity).
    pinned_conversation_id: str | None = None


class ControlState(WireModel):
    should_stop: bool
    reason: str | None = None


class SetWorkerStatusRequest(WireModel):
    worker_id: Id
    status: Literal["draining", "stopping", "stopped"]
    reason: NonEmpty


# --------------------------------------------------------------------------- leases


class ClaimedJob(WireModel):
    message_id: str
    conversation_id: str
    agent_key: str
    lease_id: str
    lease_expires_at: EpochMs
    attempt: int = Field(ge=1)
    payload: MessagePayload
    # The store's clock when it granted the lease: with ``lease_expires_at`` it gives the lease's
    # length without trusting this machine's clock (absent from upstream, which sends no clock).
    now: EpochMs | None = None


class LeaseRef(WireModel):
    """What fences heartbeat, complete and fail: the worker, the message, the current lease."""

    worker_id: Id
    message_id: Id
    lease_id: Id


# Why the store refused a heartbeat, complete or fail:
#   lease_lost       the message is under another lease now (redelivered, settled, swept)
#   lease_expired    still our lease, but it ran out before the call arrived
#   unknown_message  no message has this id
LeaseRefusal = Literal["lease_lost", "lease_expired", "unknown_message"]


class LeaseResult(WireModel):
    """The answer to a heartbeat, a complete or a release: accepted, or refused with the reason."""

    ok: bool
    refused: LeaseRefusal | None = None
    # A heartbeat's renewed expiry, and the store's clock when it answered.
    lease_expires_at: EpochMs | None = None
    now: EpochMs | None = None
    # Whether the worker must stop, on every heartbeat and complete answer, so a busy worker needs
    # no control call of its own. None: the store did not say (upstream answers a bare boolean).
    control: ControlState | None = None


class _Fenced(WireModel):
    """A call fenced by a lease. On the wire the lease's fields sit at the top level
    (``{workerId, messageId, leaseId, …}``), as upstream's functions take them."""

    lease: LeaseRef

    @model_validator(mode="before")
    @classmethod
    def _nest_lease(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lease" not in data:
            names = {"workerId": "worker_id", "messageId": "message_id", "leaseId": "lease_id"}
            lease = {py: data[key] for key, py in names.items() if key in data}
            lease.update({key: data[key] for key in names.values() if key in data})
            rest = {k: v for k, v in data.items() if k not in names and k not in names.values()}
            return {**rest, "lease": lease}
        return data

    @model_serializer(mode="wrap")
    def _flat_lease(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {**data.pop("lease"), **data}


class FailRequest(_Fenced):
    """``workerFail``: the lease it is fenced by, and what went wrong (a fault of the message)."""

    error_message: str
    retryable: bool = True


class ReleaseRequest(_Fenced):
    """``workerRelease``: give the message back without spending an attempt, because the fault was
    not the message's (gateway, model or store unwell; the worker shutting down).

    The attempt counted at its claim is undone and the message returns to its place at the head of
    its conversation, due at once. A release is accepted while the lease is still the message's
    current one, even after it ran out, as long as nobody took the message over: giving a message
    back is always safe. A replay of an accepted release is accepted again. The answer is a
    :class:`LeaseResult`.
    """

    reason: NonEmpty


class FailResult(WireModel):
    requeued: bool
    dead_lettered: bool
    next_scheduled_for: EpochMs | None = None
    # Set when the call changed nothing because the lease no longer holds.
    refused: LeaseRefusal | None = None


# --------------------------------------------------------------------------- conversations


class HistoryMessage(WireModel):
    role: HistoryRole
    content: str
    at: EpochMs | None = None


class AppendRequest(WireModel):
    conversation_id: Id
    messages: list[HistoryMessage] = Field(min_length=1)
    # The queue message these turns answer: a redelivered job appends its turns only once.
    message_id: str | None = None


class AppendResult(WireModel):
    updated: bool
    message_count: int


class Conversation(WireModel):
    conversation_id: str
    agent_key: str
    history: list[HistoryMessage]
    message_count: int
    queued: int
    processing: int
    done: int
    dead_letters: int


# --------------------------------------------------------------------------- agent workspaces

# The files of an agent's OpenClaw workspace a profile may carry: the ones OpenClaw injects into
# every prompt, and skills. Anything else (MEMORY.md, memory/) is the agent's own, kept by snapshots.
WORKSPACE_FILES = ("SOUL.md", "AGENTS.md", "IDENTITY.md", "USER.md")
# OpenClaw injects at most 20,000 characters of each workspace file; more would be cut silently.
MAX_WORKSPACE_FILE_CHARS = 20_000
MAX_WORKSPACE_BYTES = 256 * 1024
# The skill the worker bakes for an agent with a bridge: a profile cannot bring its own of that name.
BRIDGE_SKILL = "agent-bridge"
_SKILL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SKILL_FILE = re.compile(r"^skills/([^/]+)/SKILL\.md$")


def check_skill_name(name: str) -> str:
    if not _SKILL_NAME.fullmatch(name):
        raise ValueError(f"skill name {name!r} must be 1-64 of a-z 0-9 _ -, starting with a letter or digit")
    return name


def check_workspace_path(path: str) -> str:
    """A workspace file a profile may set: one of WORKSPACE_FILES, or ``skills/<name>/SKILL.md``."""
    if path in WORKSPACE_FILES:
        return path
    skill = _SKILL_FILE.fullmatch(path)
    if skill is None:
        raise ValueError(
            f"{path!r} is not a workspace file: use {', '.join(WORKSPACE_FILES)} or skills/<name>/SKILL.md"
        )
    if check_skill_name(skill.group(1)) == BRIDGE_SKILL:
        raise ValueError(f"{path!r}: the {BRIDGE_SKILL} skill is written by the worker for agents with a bridge")
    return path


def _workspace_files(files: dict[str, str]) -> dict[str, str]:
    total = 0
    for path, text in files.items():
        check_workspace_path(path)
        if len(text) > MAX_WORKSPACE_FILE_CHARS:
            raise ValueError(
                f"{path} has {len(text)} characters; OpenClaw injects at most {MAX_WORKSPACE_FILE_CHARS}: shorten it"
            )
        total += len(text.encode("utf-8"))
    if total > MAX_WORKSPACE_BYTES:
        raise ValueError(f"the workspace files add up to {total} bytes; the limit is {MAX_WORKSPACE_BYTES}")
    return files


def _skill_list(names: list[str] | None) -> list[str] | None:
    if names is None:
        return None
    for name in names:
        check_skill_name(name)
    return list(dict.fromkeys(names))


class BridgeConfig(WireModel):
    """How an agent reaches its app's ``POST {baseUrl}/agent/execute`` (upstream's bridgeConfig).

    Values left out here are looked up, in order, in the secrets ``agent-bridge.<field>.<agentKey>``,
    ``agent-bridge.<field>`` and the worker's environment (:mod:`contracts.bridge`).
    """

    enabled: bool = True
    base_url: str | None = None
    service_id: str | None = None
    app_key: str | None = None
    service_key_secret_ref: str | None = None
    app_base_url_map_json_secret_ref: str | None = None
    # The hosts bridge calls may reach (ours; upstream trusts any base URL). Empty: none.
    allowed_hosts: list[str] = Field(default_factory=list)


# An agent's workspace files (path → text), checked as OpenClaw will read them.
WorkspaceFiles = Annotated[dict[str, str], AfterValidator(_workspace_files)]


class AgentProfile(WireModel):
    agent_key: Id
    version: str = "1.0.0"
    enabled: bool = True
    secrets_ref: list[Id] = Field(default_factory=list)
    bot_identity: str | None = None
    # The OpenClaw agent id this profile runs as on the gateway ("main" by default).
    openclaw_agent_id: str = "main"
    bridge_config: BridgeConfig | None = None
    # Written into the agent's OpenClaw workspace when a machine boots (path → text).
    workspace_files: WorkspaceFiles = Field(default_factory=dict)
    # The skills the agent may see (OpenClaw's per-agent allowlist); None: every skill found.
    skills: Annotated[list[str] | None, AfterValidator(_skill_list)] = None

    @property
    def has_bridge(self) -> bool:
        return self.bridge_config is not None and self.bridge_config.enabled

    def visible_skills(self) -> list[str] | None:
        """The allowlist the gateway enforces: the profile's, plus the bridge skill it bakes."""
        if self.skills is None:
            return None
        return list(dict.fromkeys([*self.skills, *([BRIDGE_SKILL] if self.has_bridge else [])]))


class ResolvedBridge(WireModel):
    """An agent's bridge settings as far as the store could resolve them (the worker may add its env)."""

    base_url: str | None = None
    service_id: str | None = None
    service_key: SecretStr | None = None
    app_key: str | None = None
    app_base_url_map_json: SecretStr | None = None
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_serializer("service_key", "app_base_url_map_json", when_used="json")
    def _reveal(self, value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None


class HydrationBundle(WireModel):
    message_id: str
    conversation_id: str
    agent_key: str
    payload: MessagePayload
    profile: AgentProfile
    history: list[HistoryMessage]
    # Secrets resolved from the profile's refs. SecretStr keeps them out of reprs and logs.
    telegram_bot_token: SecretStr | None = None
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    # Only for a profile whose bridge is enabled.
    bridge: ResolvedBridge | None = None

    @field_serializer("telegram_bot_token", when_used="json")
    def _reveal_token(self, value: SecretStr | None) -> str | None:
        # The wire needs the value; only our process-side reprs hide it.
        return value.get_secret_value() if value is not None else None

    @field_serializer("secrets", when_used="json")
    def _reveal_secrets(self, value: dict[str, SecretStr]) -> dict[str, str]:
        return {ref: secret.get_secret_value() for ref, secret in value.items()}


# --------------------------------------------------------------------------- snapshots

# Why a snapshot was taken: the worker was drained, told to stop by a signal, idled out, or by hand.
SnapshotReason = Literal["drain", "signal", "idle", "manual"]
SnapshotStatus = Literal["uploading", "ready", "failed", "expired"]
SNAPSHOT_FORMAT = 1
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class SnapshotPrepare(WireModel):
    """``snapshotPrepare``: a new snapshot row (uploading) and where to put its archive."""

    worker_id: NonEmpty
    workspace_id: NonEmpty
    agent_key: NonEmpty
    conversation_id: NonEmpty
    reason: SnapshotReason


class SnapshotUpload(WireModel):
    snapshot_id: str
    # Convex: a storage upload URL (POST the archive). The embedded store takes the bytes itself.
    upload_url: str | None = None
    expires_at: EpochMs | None = None


class SnapshotFinalize(WireModel):
    worker_id: NonEmpty
    snapshot_id: NonEmpty
    storage_id: NonEmpty
    sha256: Sha256
    size_bytes: int = Field(ge=0)


class SnapshotRestore(WireModel):
    """The newest ready snapshot of a conversation, and how to fetch it."""

    snapshot_id: str
    agent_key: str
    conversation_id: str
    sha256: Sha256
    size_bytes: int = Field(ge=0)
    created_at: EpochMs
    storage_id: str | None = None
    download_url: str | None = None


class SnapshotRecord(WireModel):
    snapshot_id: str
    workspace_id: str
    agent_key: str
    conversation_id: str
    worker_id: str
    reason: SnapshotReason
    status: SnapshotStatus
    format_version: int = SNAPSHOT_FORMAT
    created_at: EpochMs
    completed_at: EpochMs | None = None
    storage_id: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    error: str | None = None


class SnapshotPruneResult(WireModel):
    expired: int
    # Abandoned uploads marked failed.
    abandoned: int = 0


class BootBundle(WireModel):
    """What a machine needs before its first claim for a conversation: the agent and its newest snapshot."""

    conversation_id: str
    agent_key: str
    profile: AgentProfile
    snapshot: SnapshotRestore | None = None
    # The active workers pinned to the conversation (its memory is on their machines), however
    # long since they were heard from: a worker that would pin itself to it leaves it to them.
    pinned_workers: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- the hot path in one call
#
# A busy worker's steady state is one store call per message: the complete that settles a job
# carries its history turns and claims the next job, with its bundle, in the same transaction
# (plus heartbeats). The separate calls stay for compat mode and for callers that want them.


class ClaimResult(WireModel):
    """``workerClaim`` with ``withBundle``: the job, if any, what the worker needs to run it, and
    whether the worker must stop. An idle poll, a claim and its hydration are one call."""

    control: ControlState
    # The store's clock when it answered.
    now: EpochMs
    job: ClaimedJob | None = None
    # None with a job when its agent profile is gone (the job then fails, as hydration would).
    bundle: HydrationBundle | None = None


class NextClaim(WireModel):
    """``claimNext`` on ``workerComplete``: claim the worker's next job in the same transaction."""

    # Pin the next claim to one conversation (a sticky worker), as ``workerClaim`` does.
    conversation_id: NonEmpty | None = None
    with_bundle: bool = True


class CompleteResult(LeaseResult):
    """``workerComplete``'s answer: the lease answer, plus what the complete carried.

    ``appended`` is set when history turns rode along and the complete was accepted (turns a
    redelivered message already wrote are not written twice). ``next`` is set when ``claimNext``
    was asked, whether or not this complete was accepted: the worker is free either way. A replay
    of an accepted complete answers as the first call did, and hands back the job it claimed.
    """

    appended: AppendResult | None = None
    next: ClaimResult | None = None


# --------------------------------------------------------------------------- operator views


class QueueStats(WireModel):
    queued: int
    processing: int
    done: int
    dead_letters: int
    ready_conversations: int
    inflight_conversations: int
    retrying_conversations: int
    scheduled_conversations: int
    oldest_ready_age_ms: int | None = None
    # Workers by status; an active worker without a heartbeat for a while counts as "stale".
    workers: dict[str, int] = Field(default_factory=dict)
    # The lease length this store hands out (a property of the store, not of any process).
    lease_ttl_ms: int | None = None


class DeadLetter(WireModel):
    message_id: str
    conversation_id: str
    agent_key: str
    attempts: int
    max_attempts: int
    last_error: str
    dead_lettered_at: EpochMs
    message_text: str
    # The upstream id, or for a push its run key (job:<jobId>:<slot>), so an operator can tell which.
    external_message_id: str | None = None


class RedriveResult(WireModel):
    redriven: list[str]


class ConversationSummary(WireModel):
    """One conversation as a search result: who it belongs to and its messages by status."""

    conversation_id: str
    agent_key: str
    created_at: EpochMs
    queued: int
    processing: int
    done: int
    dead_letters: int
    # The provider user of its first message (the user who started it), when the store knows it.
    user_id: str | None = None


class SettledSample(WireModel):
    """A message that finished (done or dead-lettered): when, how long after its enqueue, and in
    how many deliveries (attempts are counted at claim, so they are its claims)."""

    status: Literal["done", "dead_letter"]
    enqueued_at: EpochMs
    finished_at: EpochMs
    attempts: int = Field(ge=0)


class SettledWindow(WireModel):
    """The newest messages settled since a moment, newest first; ``truncated`` says there were
    more than the limit (figures drawn from it then cover the newest ``len(samples)`` only)."""

    since: EpochMs
    now: EpochMs
    samples: list[SettledSample]
    truncated: bool = False


class ReleaseResult(WireModel):
    released: int
    dead_lettered: int


class MessageRecord(WireModel):
    message_id: str
    conversation_id: str
    agent_key: str
    status: MessageStatus
    priority: int
    scheduled_for: EpochMs
    enqueued_at: EpochMs
    attempts: int
    max_attempts: int
    payload: MessagePayload
    last_error: str | None = None
    lease_expires_at: EpochMs | None = None
    claimed_by: str | None = None
    finished_at: EpochMs | None = None


# --------------------------------------------------------------------------- fleet


class WorkerView(WireModel):
    worker_id: str
    provider: str
    status: WorkerStatus
    heartbeat_age_ms: int
    busy: bool
    # When the worker entered its current status (e.g. when draining began).
    status_since: EpochMs | None = None
    busy_since: EpochMs | None = None
    idle_since: EpochMs | None = None
    machine_ref: MachineRef | None = None
    launch_id: str | None = None
    # The conversation it is pinned to (affinity), else the one it is busy with.
    conversation_id: str | None = None
    pinned: bool = False
    # It is uploading a snapshot: its machine must live until the snapshot is final.
    snapshot_pending: bool = False


RECENT_GAPS = 8  # arrival gaps a conversation keeps for the planner's keep-warm estimate
RECENT_HORIZON_MS = 2 * 3_600_000  # conversations with an arrival this recent are in the snapshot
RECENT_LIMIT = 1_000  # at most this many of them, the most recent first


class RecentConversation(WireModel):
    """A conversation that had a message arrive lately: the evidence for keeping workers warm."""

    conversation_id: str
    last_arrival_at: EpochMs
    # The latest gaps between its arrivals, newest first (at most RECENT_GAPS): how soon it returns.
    gaps_ms: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    # A message of it is queued or in flight now (it is counted in the demand already).
    active: bool = False


class DemandSnapshot(WireModel):
    """Everything the autoscaler learns from the store, taken in one read."""

    now: EpochMs
    ready_conversations: int
    inflight_conversations: int
    retrying_conversations: int
    scheduled_conversations: int
    oldest_ready_age_ms: int | None = None
    # The soonest future moment a waiting conversation becomes ready (retry or schedule).
    next_ready_at: EpochMs | None = None
    workers: list[WorkerView] = Field(default_factory=list)
    # Ready conversations in claim order (at most READY_IDS_LIMIT): where affinity launches go.
    ready_conversation_ids: list[str] = Field(default_factory=list)
    # Conversations with an arrival within RECENT_HORIZON_MS, most recent first (RECENT_LIMIT at most).
    recent: list[RecentConversation] = Field(default_factory=list)


READY_IDS_LIMIT = 200

# parked: the machine exists, stopped, kept for a fast start (a warm pool member).
LaunchState = Literal["requested", "running", "parked", "gone", "failed"]
OPEN_LAUNCH_STATES: tuple[LaunchState, ...] = ("requested", "running", "parked")


class ReconcileStep(WireModel):
    """One action of a reconcile plan, as an operator reads it, with its outcome once applied."""

    action: str
    target: str
    reason: str
    ok: bool | None = None
    detail: str | None = None


class ReconcileRecord(WireModel):
    """What one reconcile tick planned (and, unless a dry run, what applying it did)."""

    at: EpochMs
    provider: str
    dry_run: bool
    summary: str
    desired: int
    current: int
    launching: int
    steps: list[ReconcileStep] = Field(default_factory=list)


class LaunchRecord(WireModel):
    """A ledger row: written before a provider create call, so a retry looks it up instead."""

    launch_id: Id
    provider: Id
    requested_at: EpochMs
    state: LaunchState = "requested"
    machine_id: str | None = None
    updated_at: EpochMs | None = None
    detail: str | None = None
    # The conversation the launched worker is pinned to (affinity mode).
    conversation_id: str | None = None
