"""Push templates and jobs, their dispatches, and broadcasts: the schedule role's transactions.

A slot is dispatched in one transaction: the message is enqueued (deduplicated by its run key),
the dispatch is recorded under ``(jobId, runKey)``, and the job's ``nextRunAt`` moves on only if it
is still the value the dispatcher read. So a slot is enqueued exactly once however many dispatchers
race, and a dispatcher killed half-way leaves either everything or nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from contracts.errors import FactoryError, InvalidInput, NotFound
from contracts.models import EnqueueRequest, MessagePayload
from contracts.push import (
    SYSTEM_PUSH,
    Broadcast,
    BroadcastRecipient,
    BroadcastRequest,
    PushDispatch,
    PushDispatchRequest,
    PushJob,
    PushTemplate,
    render_text,
)
from contracts.sqlite import queue


def _json(model: PushTemplate | PushJob) -> str:
    return model.model_dump_json(by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- templates and jobs


def template_put(conn: sqlite3.Connection, template: PushTemplate, now: int) -> PushTemplate:
    row = conn.execute(
        "SELECT created_at FROM push_templates WHERE template_id = ?", (template.template_id,)
    ).fetchone()
    stored = template.model_copy(update={"created_at": row[0] if row else now, "updated_at": now})
    conn.execute(
        "INSERT INTO push_templates (template_id, body, created_at, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (template_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
        (stored.template_id, _json(stored), stored.created_at, now),
    )
    return stored


def template_get(conn: sqlite3.Connection, template_id: str) -> PushTemplate | None:
    row = conn.execute("SELECT body FROM push_templates WHERE template_id = ?", (template_id,)).fetchone()
    return None if row is None else PushTemplate.model_validate_json(row[0])


def template_delete(conn: sqlite3.Connection, template_id: str) -> bool:
    used = conn.execute("SELECT job_id FROM push_jobs WHERE template_id = ? LIMIT 1", (template_id,)).fetchone()
    if used is not None:
        raise InvalidInput("templateId", f"template {template_id!r} is used by job {used[0]!r}; delete that job first")
    return conn.execute("DELETE FROM push_templates WHERE template_id = ?", (template_id,)).rowcount == 1


def templates(conn: sqlite3.Connection) -> list[PushTemplate]:
    rows = conn.execute("SELECT body FROM push_templates ORDER BY template_id").fetchall()
    return [PushTemplate.model_validate_json(body) for (body,) in rows]


def job_put(conn: sqlite3.Connection, job: PushJob, now: int) -> PushJob:
    if template_get(conn, job.template_id) is None:
        raise NotFound("push template", job.template_id)
    row = conn.execute("SELECT body FROM push_jobs WHERE job_id = ?", (job.job_id,)).fetchone()
    created = PushJob.model_validate_json(row[0]).created_at if row else now
    stored = job.model_copy(update={"created_at": created, "updated_at": now})
    conn.execute(
        "INSERT INTO push_jobs (job_id, template_id, body, enabled, next_run_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (job_id) DO UPDATE SET template_id = excluded.template_id, body = excluded.body,"
        " enabled = excluded.enabled, next_run_at = excluded.next_run_at",
        (stored.job_id, stored.template_id, _json(stored), int(stored.enabled), stored.next_run_at),
    )
    return stored


def job_get(conn: sqlite3.Connection, job_id: str) -> PushJob | None:
    row = conn.execute("SELECT body FROM push_jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None else PushJob.model_validate_json(row[0])


def job_delete(conn: sqlite3.Connection, job_id: str) -> bool:
    return conn.execute("DELETE FROM push_jobs WHERE job_id = ?", (job_id,)).rowcount == 1


def jobs(conn: sqlite3.Connection, due_at: int | None, limit: int) -> list[PushJob]:
    if due_at is None:
        rows = conn.execute("SELECT body FROM push_jobs ORDER BY job_id LIMIT ?", (limit,)).fetchall()
    else:
        rows = conn.execute(
            "SELECT body FROM push_jobs INDEXED BY push_jobs_due"
            " WHERE enabled = 1 AND next_run_at IS NOT NULL AND next_run_at <= ? ORDER BY next_run_at LIMIT ?",
            (due_at, limit),
        ).fetchall()
    return [PushJob.model_validate_json(body) for (body,) in rows]


# --------------------------------------------------------------------------- dispatch


def _binding(conn: sqlite3.Connection, bot_id: str, telegram_user_id: str) -> tuple[str, str, str] | None:
    """(conversation, agent, chat) of a Telegram user's active binding to a bot."""
    row = conn.execute(
        "SELECT conversation_id, agent_key, coalesce(telegram_chat_id, telegram_user_id) FROM identity_bindings"
        " WHERE bot_id = ? AND telegram_user_id = ? AND status = 'active'",
        (bot_id, telegram_user_id),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), str(row[2]))


def _route(conn: sqlite3.Connection, conversation_id: str, default_user: str) -> tuple[str, dict[str, str]]:
    """Where a reply in this conversation goes: a Telegram chat keeps receiving in its chat."""
    row = conn.execute(
        "SELECT payload FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1", (conversation_id,)
    ).fetchone()
    if row is None:
        return default_user, {}
    last = MessagePayload.model_validate_json(row[0])
    metadata = last.metadata or {}
    if last.provider == "telegram":
        return last.provider_user_id, {"telegramChatId": metadata.get("telegramChatId", last.provider_user_id)}
    if "telegramChatId" in metadata:
        return last.provider_user_id, {"telegramChatId": metadata["telegramChatId"]}
    return default_user, {}


def _enqueue_push(
    conn: sqlite3.Connection,
    *,
    conversation_id: str,
    agent_key: str,
    text: str,
    user: str | None,
    key: str,
    metadata: dict[str, str],
    now: int,
    new_id: queue.TokenSource,
    chat: str | None = None,
) -> str:
    provider_user, route = _route(conn, conversation_id, user or conversation_id)
    if chat is not None:
        route = {"telegramChatId": chat}
    request = EnqueueRequest(
        conversation_id=conversation_id,
        agent_key=agent_key,
        payload=MessagePayload(
            provider=SYSTEM_PUSH,
            provider_user_id=user or provider_user,
            message_text=text,
            external_message_id=key,
            metadata={**route, **metadata},
        ),
    )
    message_id, _ = queue.enqueue(conn, request, now, new_id)
    return message_id


def _dispatch_row(row: tuple[Any, ...], fresh: bool) -> PushDispatch:
    job_id, run_key, slot_at, status, message_id, error, created_at = row
    return PushDispatch(
        job_id=job_id,
        run_key=run_key,
        slot_at=slot_at,
        status=status,
        message_id=message_id,
        error=error,
        created_at=created_at,
        fresh=fresh,
    )


_DISPATCH_COLUMNS = "job_id, run_key, slot_at, status, message_id, error, created_at"


def dispatch(
    conn: sqlite3.Connection, request: PushDispatchRequest, now: int, new_id: queue.TokenSource
) -> PushDispatch:
    seen = conn.execute(
        f"SELECT {_DISPATCH_COLUMNS} FROM push_dispatches WHERE job_id = ? AND run_key = ?",
        (request.job_id, request.run_key),
    ).fetchone()
    if seen is not None:
        return _dispatch_row(seen, fresh=False)
    job = job_get(conn, request.job_id)
    if job is None:
        raise NotFound("push job", request.job_id)
    if request.mode == "scheduled" and job.next_run_at != request.expected_next_run_at:
        # Another dispatcher moved this job on after we read it: its slot is theirs.
        return PushDispatch(
            job_id=job.job_id,
            run_key=request.run_key,
            slot_at=request.slot_at,
            status="skipped",
            error="another dispatcher handled this slot",
            created_at=now,
            fresh=False,
        )
    status, message_id, error = "skipped", None, request.skip_reason
    if request.skip_reason is None:
        try:
            template = template_get(conn, job.template_id)
            if template is None:
                raise NotFound("push template", job.template_id)
            conversation_id, agent_key, chat = job.conversation_id, template.agent_key, None
            if job.telegram_user_id is not None and job.bot_id is not None:
                bound = _binding(conn, job.bot_id, job.telegram_user_id)
                if bound is None:
                    raise NotFound("active binding for", f"{job.bot_id}:{job.telegram_user_id}")
                conversation_id, agent_key, chat = bound  # the user's bound agent speaks, as upstream
            assert conversation_id is not None  # a job has a conversation or a Telegram user
            message_id = _enqueue_push(
                conn,
                conversation_id=conversation_id,
                agent_key=agent_key,
                chat=chat,
                text=render_text(template.text, job.variables),
                user=job.provider_user_id or job.telegram_user_id,
                key=request.run_key,
                metadata={"pushJobId": job.job_id, "runKey": request.run_key, "pushMode": request.mode},
                now=now,
                new_id=new_id,
            )
            status = "enqueued"
        except FactoryError as exc:
            status, error = "failed", str(exc)[:500]
    conn.execute(
        f"INSERT INTO push_dispatches ({_DISPATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (job.job_id, request.run_key, request.slot_at, status, message_id, error, now),
    )
    moved = {"last_run_at": request.slot_at, "last_run_key": request.run_key, "updated_at": now}
    if request.mode == "scheduled":
        moved["next_run_at"] = request.next_run_at
    updated = job.model_copy(update=moved)
    conn.execute(
        "UPDATE push_jobs SET body = ?, next_run_at = ? WHERE job_id = ?",
        (_json(updated), updated.next_run_at, job.job_id),
    )
    return PushDispatch(
        job_id=job.job_id,
        run_key=request.run_key,
        slot_at=request.slot_at,
        status=status,  # type: ignore[arg-type]  # one of the DispatchStatus literals by construction
        message_id=message_id,
        error=error,
        created_at=now,
    )


def dispatches(conn: sqlite3.Connection, job_id: str, limit: int) -> list[PushDispatch]:
    rows = conn.execute(
        f"SELECT {_DISPATCH_COLUMNS} FROM push_dispatches WHERE job_id = ? ORDER BY created_at DESC, slot_at DESC"
        " LIMIT ?",
        (job_id, limit),
    ).fetchall()
    return [_dispatch_row(row, fresh=True) for row in rows]


# --------------------------------------------------------------------------- broadcasts


def _recipients(conn: sqlite3.Connection, agents: list[str] | None) -> list[tuple[str, str, str | None, str | None]]:
    """(conversation, agent, user, chat): every conversation of the enabled agents, and every
    conversation an active binding made for them (a user who paired but never wrote is reached)."""
    rows = conn.execute(
        "SELECT c.conversation_id, c.agent_key, b.telegram_user_id, coalesce(b.telegram_chat_id, b.telegram_user_id)"
        " FROM conversations AS c JOIN agent_profiles AS p ON p.agent_key = c.agent_key"
        " LEFT JOIN identity_bindings AS b ON b.conversation_id = c.conversation_id AND b.status = 'active'"
        " WHERE p.enabled = 1"
        " UNION"
        " SELECT b.conversation_id, b.agent_key, b.telegram_user_id, coalesce(b.telegram_chat_id, b.telegram_user_id)"
        " FROM identity_bindings AS b JOIN agent_profiles AS p ON p.agent_key = b.agent_key"
        " WHERE p.enabled = 1 AND b.status = 'active'"
        " AND NOT EXISTS (SELECT 1 FROM conversations AS c WHERE c.conversation_id = b.conversation_id)"
        " ORDER BY 2, 1"
    ).fetchall()
    return [(conv, agent, user, chat) for conv, agent, user, chat in rows if agents is None or agent in agents]


def _load_broadcast(conn: sqlite3.Connection, broadcast_id: str, fresh: bool) -> Broadcast | None:
    row = conn.execute(
        "SELECT requested_by, requested_at, text_sha256, agents, status FROM broadcasts WHERE broadcast_id = ?",
        (broadcast_id,),
    ).fetchone()
    if row is None:
        return None
    by, at, digest, agents, status = row
    recipients = [
        BroadcastRecipient(conversation_id=conv, agent_key=agent, status=st, message_id=mid, error=err)
        for conv, agent, st, mid, err in conn.execute(
            "SELECT conversation_id, agent_key, status, message_id, error FROM broadcast_recipients"
            " WHERE broadcast_id = ? ORDER BY agent_key, conversation_id",
            (broadcast_id,),
        )
    ]
    return Broadcast(
        broadcast_id=broadcast_id,
        requested_by=by,
        requested_at=at,
        text_sha256=digest,
        agents=json.loads(agents) if agents else None,
        status=status,
        recipients=recipients,
        fresh=fresh,
    )


def broadcast(conn: sqlite3.Connection, request: BroadcastRequest, now: int, new_id: queue.TokenSource) -> Broadcast:
    existing = _load_broadcast(conn, request.broadcast_id, fresh=False)
    if existing is not None:
        return existing
    failed = False
    for conversation_id, agent_key, user, chat in _recipients(conn, request.agents):
        key = f"broadcast:{request.broadcast_id}:{conversation_id}"
        status, message_id, error = "enqueued", None, None
        try:
            message_id = _enqueue_push(
                conn,
                conversation_id=conversation_id,
                agent_key=agent_key,
                text=request.text,
                user=user,
                chat=chat,
                key=key,
                metadata={"broadcastId": request.broadcast_id, "runKey": key, "pushMode": "broadcast"},
                now=now,
                new_id=new_id,
            )
        except FactoryError as exc:
            status, error, failed = "failed", str(exc)[:500], True
        conn.execute(
            "INSERT INTO broadcast_recipients (broadcast_id, conversation_id, agent_key, status, message_id, error)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (request.broadcast_id, conversation_id, agent_key, status, message_id, error),
        )
    conn.execute(
        "INSERT INTO broadcasts (broadcast_id, requested_by, requested_at, text_sha256, agents, status)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            request.broadcast_id,
            request.requested_by,
            now,
            hashlib.sha256(request.text.encode()).hexdigest(),
            None if request.agents is None else json.dumps(request.agents),
            "failed" if failed else "done",
        ),
    )
    loaded = _load_broadcast(conn, request.broadcast_id, fresh=True)
    assert loaded is not None  # just written in this transaction
    return loaded


def broadcasts(conn: sqlite3.Connection, limit: int) -> list[Broadcast]:
    ids = conn.execute("SELECT broadcast_id FROM broadcasts ORDER BY requested_at DESC LIMIT ?", (limit,)).fetchall()
    return [b for (bid,) in ids if (b := _load_broadcast(conn, bid, fresh=True)) is not None]
