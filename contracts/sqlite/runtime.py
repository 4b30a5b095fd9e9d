"""The runtime role on SQLite: accounts, agents, tasks, notifications, agent messages.

Every function that serves an account's runtime takes the account id first and filters on it, so
:class:`BoundAccount` (opened with the account's service token) cannot reach another account's rows.

:func:`on_complete` runs inside the transaction that completes a queue message: a message that
carries a notification id marks that notification delivered and posts the agent's reply on its
task; one that carries a heartbeat marks the agent online. A replayed complete finds the work
done and changes nothing, so nothing is delivered or posted twice.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Callable
from typing import Protocol, TypeVar

from pydantic import SecretStr

from contracts.errors import InvalidInput, NotFound
from contracts.runtime import (
    HEARTBEAT_KEY,
    NOTIFICATION_KEY,
    AccessRefused,
    Account,
    AccountView,
    AgentMessage,
    DeliveryContext,
    HeartbeatStatus,
    Notification,
    RuntimeAgent,
    RuntimeDetails,
    RuntimeStatus,
    Task,
    is_quiet,
    token_matches,
)

T = TypeVar("T")

_ACCOUNT_COLS = "account_id, name, active, status, details, created_at"
_AGENT_COLS = "body, heartbeat_status, last_heartbeat_at"


def _account(row: tuple[str, str, int, str, str, int]) -> Account:
    account_id, name, active, status, details, created_at = row
    return Account.model_validate(
        {"accountId": account_id, "name": name, "active": bool(active), "status": status, "createdAt": created_at}
        | json.loads(details)
    )


def _agent(row: tuple[str, str | None, int | None]) -> RuntimeAgent:
    body, status, at = row
    return RuntimeAgent.model_validate_json(body).model_copy(
        update={"heartbeat_status": status, "last_heartbeat_at": at}
    )


def _notification(row: tuple[str, int | None]) -> Notification:
    body, delivered_at = row
    return Notification.model_validate_json(body).model_copy(update={"delivered_at": delivered_at})


def _dump(model: Account | RuntimeAgent | Task | Notification | AgentMessage | RuntimeDetails) -> str:
    return model.model_dump_json(by_alias=True, exclude_none=True)


# ---------------------------------------------------------------- the operator's side


def account_put(conn: sqlite3.Connection, account: Account, now: int) -> Account:
    conn.execute(
        "INSERT INTO rt_accounts (account_id, name, active, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (account_id) DO UPDATE SET name = excluded.name, active = excluded.active",
        (account.account_id, account.name, int(account.active), now),
    )
    found = get_account(conn, account.account_id)
    assert found is not None  # written just above, in this transaction
    return found


def get_account(conn: sqlite3.Connection, account_id: str) -> Account | None:
    row = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM rt_accounts WHERE account_id = ?", (account_id,)).fetchone()
    return None if row is None else _account(row)


def accounts(conn: sqlite3.Connection) -> list[Account]:
    return [_account(r) for r in conn.execute(f"SELECT {_ACCOUNT_COLS} FROM rt_accounts ORDER BY account_id")]


def set_token(conn: sqlite3.Connection, account_id: str, digest: str) -> bool:
    return conn.execute("UPDATE rt_accounts SET token_hash = ? WHERE account_id = ?", (digest, account_id)).rowcount > 0


def check_token(conn: sqlite3.Connection, account_id: str, token: SecretStr) -> None:
    row = conn.execute("SELECT token_hash FROM rt_accounts WHERE account_id = ?", (account_id,)).fetchone()
    if not token_matches(token, None if row is None else row[0]):
        raise AccessRefused(account_id)


def _require_account(conn: sqlite3.Connection, account_id: str) -> None:
    if get_account(conn, account_id) is None:
        raise NotFound("account", account_id)


def agent_put(conn: sqlite3.Connection, agent: RuntimeAgent) -> RuntimeAgent:
    _require_account(conn, agent.account_id)
    taken = conn.execute(
        "SELECT agent_id FROM rt_agents WHERE account_id = ? AND slug = ?", (agent.account_id, agent.slug)
    ).fetchone()
    if taken is not None and taken[0] != agent.agent_id:
        raise InvalidInput("slug", f"{agent.slug!r} is agent {taken[0]}'s in account {agent.account_id}; pick another")
    owner = conn.execute("SELECT account_id FROM rt_agents WHERE agent_id = ?", (agent.agent_id,)).fetchone()
    if owner is not None and owner[0] != agent.account_id:
        raise InvalidInput("agentId", f"{agent.agent_id} belongs to another account; pick another id")
    stored = agent.model_copy(update={"heartbeat_status": None, "last_heartbeat_at": None})
    conn.execute(
        "INSERT INTO rt_agents (agent_id, account_id, slug, body) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (agent_id) DO UPDATE SET slug = excluded.slug, body = excluded.body",
        (agent.agent_id, agent.account_id, agent.slug, _dump(stored)),
    )
    found = get_agent(conn, agent.account_id, agent.agent_id)
    assert found is not None
    return found


def task_put(conn: sqlite3.Connection, task: Task, now: int) -> Task:
    _require_account(conn, task.account_id)
    row = conn.execute("SELECT account_id, body FROM rt_tasks WHERE task_id = ?", (task.task_id,)).fetchone()
    if row is not None and row[0] != task.account_id:
        raise InvalidInput("taskId", f"{task.task_id} belongs to another account; pick another id")
    created = Task.model_validate_json(row[1]).created_at if row is not None else now
    stored = task.model_copy(update={"created_at": created})
    conn.execute(
        "INSERT INTO rt_tasks (task_id, account_id, body) VALUES (?, ?, ?)"
        " ON CONFLICT (task_id) DO UPDATE SET body = excluded.body",
        (task.task_id, task.account_id, _dump(stored)),
    )
    return stored


def notification_post(conn: sqlite3.Connection, notification: Notification, now: int) -> Notification:
    account_id = notification.account_id
    _require_account(conn, account_id)
    if get_agent(conn, account_id, notification.agent_id) is None:
        raise NotFound(f"agent of account {account_id}", notification.agent_id)
    if notification.task_id is not None and get_task(conn, account_id, notification.task_id) is None:
        raise NotFound(f"task of account {account_id}", notification.task_id)
    existing = conn.execute(
        "SELECT body, delivered_at FROM rt_notifications WHERE notification_id = ?", (notification.notification_id,)
    ).fetchone()
    if existing is not None:
        kept = _notification(existing)
        if kept.account_id != account_id:
            raise InvalidInput("notificationId", "is another account's; pick another id")
        return kept
    stored = notification.model_copy(update={"created_at": now, "delivered_at": None})
    conn.execute(
        "INSERT INTO rt_notifications (notification_id, account_id, agent_id, body) VALUES (?, ?, ?, ?)",
        (stored.notification_id, account_id, stored.agent_id, _dump(stored)),
    )
    return stored


def account_view(conn: sqlite3.Connection, account_id: str, limit: int) -> AccountView | None:
    account = get_account(conn, account_id)
    if account is None:
        return None
    tasks = [
        Task.model_validate_json(r[0])
        for r in conn.execute("SELECT body FROM rt_tasks WHERE account_id = ? ORDER BY task_id", (account_id,))
    ]
    notes = [
        _notification(r)
        for r in conn.execute(
            "SELECT body, delivered_at FROM rt_notifications WHERE account_id = ? ORDER BY seq DESC LIMIT ?",
            (account_id, limit),
        )
    ]
    posted = [
        AgentMessage.model_validate_json(r[0])
        for r in conn.execute(
            "SELECT body FROM rt_agent_messages WHERE account_id = ? ORDER BY seq DESC LIMIT ?", (account_id, limit)
        )
    ]
    return AccountView(
        account=account, agents=agents(conn, account_id), tasks=tasks, notifications=notes[::-1], messages=posted[::-1]
    )


# ---------------------------------------------------------------- one account's runtime


def agents(conn: sqlite3.Connection, account_id: str) -> list[RuntimeAgent]:
    rows = conn.execute(f"SELECT {_AGENT_COLS} FROM rt_agents WHERE account_id = ? ORDER BY slug", (account_id,))
    return [_agent(r) for r in rows]


def get_agent(conn: sqlite3.Connection, account_id: str, agent_id: str) -> RuntimeAgent | None:
    row = conn.execute(
        f"SELECT {_AGENT_COLS} FROM rt_agents WHERE account_id = ? AND agent_id = ?", (account_id, agent_id)
    ).fetchone()
    return None if row is None else _agent(row)


def get_task(conn: sqlite3.Connection, account_id: str, task_id: str) -> Task | None:
    row = conn.execute(
        "SELECT body FROM rt_tasks WHERE account_id = ? AND task_id = ?", (account_id, task_id)
    ).fetchone()
    return None if row is None else Task.model_validate_json(row[0])


def undelivered(conn: sqlite3.Connection, account_id: str, limit: int) -> list[Notification]:
    rows = conn.execute(
        "SELECT body, delivered_at FROM rt_notifications WHERE account_id = ? AND delivered_at IS NULL"
        " ORDER BY seq LIMIT ?",
        (account_id, limit),
    )
    return [_notification(r) for r in rows]


def for_delivery(conn: sqlite3.Connection, account_id: str, notification_id: str) -> DeliveryContext | None:
    row = conn.execute(
        "SELECT body, delivered_at FROM rt_notifications WHERE account_id = ? AND notification_id = ?",
        (account_id, notification_id),
    ).fetchone()
    if row is None:
        return None
    note = _notification(row)
    agent = get_agent(conn, account_id, note.agent_id)
    if agent is None:
        return None
    task = None if note.task_id is None else get_task(conn, account_id, note.task_id)
    return DeliveryContext(notification=note, agent=agent, task=task)


def mark_delivered(conn: sqlite3.Connection, account_id: str, notification_id: str, now: int) -> bool:
    return (
        conn.execute(
            "UPDATE rt_notifications SET delivered_at = ?"
            " WHERE account_id = ? AND notification_id = ? AND delivered_at IS NULL",
            (now, account_id, notification_id),
        ).rowcount
        > 0
    )


def upsert_heartbeat(
    conn: sqlite3.Connection, account_id: str, agent_id: str, status: HeartbeatStatus, now: int
) -> bool:
    return (
        conn.execute(
            "UPDATE rt_agents SET heartbeat_status = ?, last_heartbeat_at = ? WHERE account_id = ? AND agent_id = ?",
            (status, now, account_id, agent_id),
        ).rowcount
        > 0
    )


def create_from_agent(
    conn: sqlite3.Connection, account_id: str, agent_id: str, task_id: str, content: str, now: int, message_id: str
) -> AgentMessage | None:
    """Post on a task; a repeated ``message_id`` returns the first post (a replayed complete)."""
    if get_agent(conn, account_id, agent_id) is None or get_task(conn, account_id, task_id) is None:
        return None
    seen = conn.execute(
        "SELECT body FROM rt_agent_messages WHERE message_id = ? AND account_id = ?", (message_id, account_id)
    ).fetchone()
    if seen is not None:
        return AgentMessage.model_validate_json(seen[0])
    posted = AgentMessage(
        message_id=message_id,
        account_id=account_id,
        agent_id=agent_id,
        task_id=task_id,
        content=content,
        created_at=now,
    )
    conn.execute(
        "INSERT INTO rt_agent_messages (message_id, account_id, task_id, body) VALUES (?, ?, ?, ?)",
        (message_id, account_id, task_id, _dump(posted)),
    )
    return posted


def update_status(
    conn: sqlite3.Connection, account_id: str, status: RuntimeStatus, details: RuntimeDetails | None
) -> Account:
    row = conn.execute("SELECT details FROM rt_accounts WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        raise NotFound("account", account_id)
    merged = json.loads(row[0]) | ({} if details is None else json.loads(_dump(details)))
    conn.execute(
        "UPDATE rt_accounts SET status = ?, details = ? WHERE account_id = ?",
        (status, json.dumps(merged, sort_keys=True), account_id),
    )
    found = get_account(conn, account_id)
    assert found is not None
    return found


# ---------------------------------------------------------------- the queue's completion hook


def on_complete(
    conn: sqlite3.Connection, conversation_id: str, message_id: str, metadata: str | None, now: int
) -> None:
    """Settle what a completed queue message stood for (its notification, its heartbeat).

    On every complete (the hot path): ``metadata`` is the message payload's metadata as JSON, read
    by the statement that marked the message done; a message without metadata costs nothing more."""
    if metadata is None:
        return
    fields = json.loads(metadata)
    notification_id, heartbeat_agent = fields.get(NOTIFICATION_KEY), fields.get(HEARTBEAT_KEY)
    if heartbeat_agent is not None:
        agent = _agent_in(conn, heartbeat_agent, conversation_id)
        if agent is not None:
            upsert_heartbeat(conn, agent.account_id, agent.agent_id, "online", now)
    if notification_id is None:
        return
    found = conn.execute(
        "SELECT account_id, agent_id FROM rt_notifications WHERE notification_id = ?", (notification_id,)
    ).fetchone()
    # Only a message in the notification's own agent's conversation settles it: any enqueuer can
    # write metadata, and must not mark another account's notification delivered.
    if found is None or _agent_in(conn, found[1], conversation_id) is None:
        return
    account_id = found[0]
    if not mark_delivered(conn, account_id, notification_id, now):
        return
    context = for_delivery(conn, account_id, notification_id)
    reply = _reply_of(conn, message_id)
    if context is None or context.task is None or reply is None or is_quiet(reply):
        return
    create_from_agent(conn, account_id, context.agent.agent_id, context.task.task_id, reply, now, f"am_{message_id}")


def _agent_in(conn: sqlite3.Connection, agent_id: str, conversation_id: str) -> RuntimeAgent | None:
    row = conn.execute(f"SELECT {_AGENT_COLS}, account_id FROM rt_agents WHERE agent_id = ?", (agent_id,)).fetchone()
    if row is None:
        return None
    agent = _agent(row[:3])
    return agent if agent.session_key == conversation_id else None


def _reply_of(conn: sqlite3.Connection, message_id: str) -> str | None:
    """The agent's answer to the message, as the worker recorded it in the conversation history."""
    row = conn.execute(
        "SELECT content FROM history WHERE source_message_id = ? AND role = 'assistant' ORDER BY idx DESC LIMIT 1",
        (message_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def new_agent_message_id() -> str:
    return "am_" + secrets.token_hex(12)


class Transactions(Protocol):
    """The store's short transactions (SqliteStore's), run with the store's clock."""

    async def _read(self, op: Callable[[sqlite3.Connection, int], T]) -> T: ...

    async def _write(self, op: Callable[[sqlite3.Connection, int], T], *, ring: bool = False) -> T: ...


class BoundAccount:
    """One account's runtime rows, opened with its service token: every call is filtered by the
    account, and checks the token again in its own transaction (a rotated token stops at once)."""

    def __init__(self, store: Transactions, account_id: str, token: SecretStr) -> None:
        self._store = store
        self._id = account_id
        self._token = token

    @property
    def account_id(self) -> str:
        return self._id

    def _checked(self, op: Callable[[sqlite3.Connection, int], T]) -> Callable[[sqlite3.Connection, int], T]:
        def run(conn: sqlite3.Connection, now: int) -> T:
            check_token(conn, self._id, self._token)
            return op(conn, now)

        return run

    async def _read(self, op: Callable[[sqlite3.Connection, int], T]) -> T:
        return await self._store._read(self._checked(op))

    async def _write(self, op: Callable[[sqlite3.Connection, int], T]) -> T:
        return await self._store._write(self._checked(op))

    async def agents(self) -> list[RuntimeAgent]:
        return await self._read(lambda c, _: agents(c, self._id))

    async def undelivered(self, limit: int = 50) -> list[Notification]:
        return await self._read(lambda c, _: undelivered(c, self._id, min(max(limit, 1), 1000)))

    async def for_delivery(self, notification_id: str) -> DeliveryContext | None:
        return await self._read(lambda c, _: for_delivery(c, self._id, notification_id))

    async def mark_delivered(self, notification_id: str) -> bool:
        return await self._write(lambda c, now: mark_delivered(c, self._id, notification_id, now))

    async def upsert_heartbeat(self, agent_id: str, status: HeartbeatStatus) -> bool:
        return await self._write(lambda c, now: upsert_heartbeat(c, self._id, agent_id, status, now))

    async def create_from_agent(self, agent_id: str, task_id: str, content: str) -> AgentMessage | None:
        message_id = new_agent_message_id()
        return await self._write(
            lambda c, now: create_from_agent(c, self._id, agent_id, task_id, content, now, message_id)
        )

    async def update_runtime_status(self, status: RuntimeStatus, details: RuntimeDetails | None = None) -> Account:
        return await self._write(lambda c, _: update_status(c, self._id, status, details))
