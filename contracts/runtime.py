"""Wire models and pure rules of the per-account runtime (Mission Control's shared brain).

An **account** owns **agents** (each with one session conversation, ``agent:{slug}:{accountId}``),
**tasks**, **notifications** for its agents, and the **messages** agents post on tasks. The
account's runtime authenticates with a **service token**: only its sha256 is stored, compared in
constant time, and a store handle opened with it is bound to that one account (every read and
write it makes is filtered by the account id it was opened for).

A notification becomes a queue message in its agent's session conversation, deduped on the
notification id (``externalMessageId``) and carrying it in ``metadata.notificationId``; the store
marks the notification delivered, and posts the agent's reply on the notification's task, in the
same transaction that completes that message. Heartbeats ride the queue the same way
(``metadata.heartbeatAgentId``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr

from contracts.errors import FactoryError
from contracts.models import EpochMs, Id, MessageText, NonEmpty, WireModel, WorkspaceFiles

RUNTIME_PROVIDER = "runtime"
NOTIFICATION_KEY = "notificationId"
HEARTBEAT_KEY = "heartbeatAgentId"
TOKEN_PREFIX = "fst_"
# OpenClaw's answers that mean "nothing to say": never posted anywhere.
QUIET_REPLIES = frozenset({"HEARTBEAT_OK", "NO_REPLY"})
DEFAULT_HEARTBEAT_MINUTES = 15

RuntimeStatus = Literal["online", "degraded", "offline"]
HeartbeatStatus = Literal["online", "degraded", "offline"]
TaskStatus = Literal["inbox", "assigned", "in_progress", "review", "done", "blocked"]

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a slug: lower-case letters, digits and '-', up to 48, e.g. jarvis")
    return value


Slug = Annotated[str, AfterValidator(_slug)]


class AccessRefused(FactoryError):
    """The service token does not open this account (wrong, revoked, or another account's)."""

    retryable = False

    def __init__(self, account_id: str) -> None:
        # Never the token: only which account refused it.
        super().__init__(f"account {account_id}: the service token was refused; issue one with `factory account token`")
        self.account_id = account_id


def new_service_token() -> SecretStr:
    return SecretStr(TOKEN_PREFIX + secrets.token_urlsafe(32))


def token_hash(token: SecretStr) -> str:
    return hashlib.sha256(token.get_secret_value().encode("utf-8")).hexdigest()


def token_matches(token: SecretStr, stored_hash: str | None) -> bool:
    """Constant-time: how much of the hash matched never shows in the time taken."""
    return stored_hash is not None and hmac.compare_digest(token_hash(token), stored_hash)


def session_key(slug: str, account_id: str) -> str:
    """The seed's session key; also the id of the agent's conversation on our queue."""
    return f"agent:{slug}:{account_id}"


def is_quiet(reply: str) -> bool:
    return reply.strip() in QUIET_REPLIES


class Account(WireModel):
    account_id: Id
    name: NonEmpty
    active: bool = True
    status: RuntimeStatus = "offline"
    droplet_id: str | None = None
    ip_address: str | None = None
    last_health_check: EpochMs | None = None
    version: str | None = None
    created_at: EpochMs | None = None


class RuntimeDetails(WireModel):
    """What ``updateRuntimeStatus`` records beside the status."""

    droplet_id: str | None = None
    ip_address: str | None = None
    last_health_check: EpochMs | None = None
    version: str | None = None


class RuntimeAgent(WireModel):
    agent_id: Id
    account_id: Id
    name: NonEmpty
    slug: Slug
    heartbeat_interval: int = Field(DEFAULT_HEARTBEAT_MINUTES, ge=1, le=24 * 60)  # minutes
    # The OpenClaw agent this agent runs as on the account's gateway.
    openclaw_agent_id: str = "main"
    workspace_files: WorkspaceFiles = Field(default_factory=dict)
    heartbeat_status: HeartbeatStatus | None = None
    last_heartbeat_at: EpochMs | None = None

    @property
    def session_key(self) -> str:
        return session_key(self.slug, self.account_id)

    @property
    def agent_key(self) -> str:
        """The queue's agent profile this agent runs under."""
        return f"{self.account_id}.{self.slug}"


class Task(WireModel):
    task_id: Id
    account_id: Id
    title: NonEmpty
    status: TaskStatus = "inbox"
    created_at: EpochMs | None = None


class Notification(WireModel):
    notification_id: Id
    account_id: Id
    agent_id: Id
    type: NonEmpty
    title: NonEmpty
    body: MessageText = ""
    task_id: Id | None = None
    created_at: EpochMs | None = None
    delivered_at: EpochMs | None = None


class DeliveryContext(WireModel):
    """``getForDelivery``: a notification with its agent and task."""

    notification: Notification
    agent: RuntimeAgent
    task: Task | None = None


class AgentMessage(WireModel):
    """What an agent posted on a task (``messages.createFromAgent``)."""

    message_id: Id
    account_id: Id
    agent_id: Id
    task_id: Id
    content: MessageText
    created_at: EpochMs | None = None


class AccountView(WireModel):
    account: Account
    agents: list[RuntimeAgent]
    tasks: list[Task]
    notifications: list[Notification]
    messages: list[AgentMessage]
