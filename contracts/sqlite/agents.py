"""Agent profiles, conversation history and the hydration bundle."""

from __future__ import annotations

import sqlite3
from typing import Any

from contracts.bridge import bridge_secret_refs, resolve_bridge
from contracts.ingress import hydration_refs, pick_telegram_token
from contracts.models import (
    MAX_PAGE,
    AgentProfile,
    AppendRequest,
    AppendResult,
    Conversation,
    HistoryMessage,
    HydrationBundle,
    MessagePayload,
    MessageRecord,
)
from contracts.secrets import SecretBox
from contracts.sqlite import secrets

HISTORY_WINDOW = 64


def upsert_profile(conn: sqlite3.Connection, profile: AgentProfile, now: int) -> AgentProfile:
    conn.execute(
        "INSERT INTO agent_profiles (agent_key, profile, enabled, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (agent_key) DO UPDATE SET profile = excluded.profile, enabled = excluded.enabled,"
        " updated_at = excluded.updated_at",
        (
            profile.agent_key,
            profile.model_dump_json(by_alias=True, exclude_none=True),
            int(profile.enabled),
            now,
        ),
    )
    return profile


def get_profile(conn: sqlite3.Connection, agent_key: str) -> AgentProfile | None:
    row = conn.execute("SELECT profile FROM agent_profiles WHERE agent_key = ?", (agent_key,)).fetchone()
    return None if row is None else AgentProfile.model_validate_json(row[0])


def _history(conn: sqlite3.Connection, conversation_id: str, limit: int) -> list[HistoryMessage]:
    rows = conn.execute(
        "SELECT role, content, at FROM history WHERE conversation_id = ? ORDER BY idx DESC LIMIT ?",
        (conversation_id, max(0, min(limit, MAX_PAGE))),
    ).fetchall()
    return [HistoryMessage(role=role, content=content, at=at) for role, content, at in reversed(rows)]


def append_history(conn: sqlite3.Connection, request: AppendRequest, now: int) -> AppendResult:
    row = conn.execute(
        "SELECT history_count FROM conversations WHERE conversation_id = ?", (request.conversation_id,)
    ).fetchone()
    if row is None:
        return AppendResult(updated=False, message_count=0)
    count = int(row[0])
    if request.message_id is not None:
        seen = conn.execute(
            "SELECT 1 FROM history WHERE source_message_id = ? AND conversation_id = ? LIMIT 1",
            (request.message_id, request.conversation_id),
        ).fetchone()
        if seen is not None:
            return AppendResult(updated=False, message_count=count)
    conn.executemany(
        "INSERT INTO history (conversation_id, idx, role, content, at, source_message_id) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                request.conversation_id,
                count + i,
                m.role,
                m.content,
                m.at if m.at is not None else now,
                request.message_id,
            )
            for i, m in enumerate(request.messages)
        ],
    )
    count += len(request.messages)
    conn.execute(
        "UPDATE conversations SET history_count = ? WHERE conversation_id = ?",
        (count, request.conversation_id),
    )
    return AppendResult(updated=True, message_count=count)


def hydration_bundle(conn: sqlite3.Connection, message_id: str, box: SecretBox | None) -> HydrationBundle | None:
    """What a worker needs to run a claimed message; None unless the message is processing."""
    row = conn.execute(
        "SELECT conversation_id, agent_key, payload FROM messages WHERE message_id = ? AND status = 'processing'",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    conversation_id, agent_key, payload = row
    return bundle_for(conn, message_id, conversation_id, agent_key, MessagePayload.model_validate_json(payload), box)


def bundle_for(
    conn: sqlite3.Connection,
    message_id: str,
    conversation_id: str,
    agent_key: str,
    payload: MessagePayload,
    box: SecretBox | None,
) -> HydrationBundle | None:
    """The bundle of a message the caller knows is processing; None when its agent profile is gone."""
    profile = get_profile(conn, agent_key)
    if profile is None:
        return None
    resolved = secrets.resolve(conn, hydration_refs(agent_key, profile.secrets_ref), box)
    bridge = None
    if profile.bridge_config is not None and profile.has_bridge:
        # Only an agent with a bridge is sent bridge secrets, and only its own and the global ones.
        found = secrets.resolve(conn, bridge_secret_refs(agent_key, profile.bridge_config), box)
        bridge = resolve_bridge(agent_key, profile.bridge_config, {k: v.get_secret_value() for k, v in found.items()})
    return HydrationBundle(
        message_id=message_id,
        conversation_id=conversation_id,
        agent_key=agent_key,
        payload=payload,
        profile=profile,
        history=_history(conn, conversation_id, HISTORY_WINDOW),
        telegram_bot_token=pick_telegram_token(agent_key, profile.secrets_ref, resolved),
        secrets=resolved,
        bridge=bridge,
    )


def get_conversation(conn: sqlite3.Connection, conversation_id: str, history_limit: int) -> Conversation | None:
    row = conn.execute(
        "SELECT agent_key, history_count FROM conversations WHERE conversation_id = ?", (conversation_id,)
    ).fetchone()
    if row is None:
        return None
    counts = dict(
        conn.execute(
            "SELECT status, count(*) FROM messages WHERE conversation_id = ? GROUP BY status",
            (conversation_id,),
        ).fetchall()
    )
    return Conversation(
        conversation_id=conversation_id,
        agent_key=row[0],
        history=_history(conn, conversation_id, history_limit),
        message_count=int(row[1]),
        queued=counts.get("queued", 0),
        processing=counts.get("processing", 0),
        done=counts.get("done", 0),
        dead_letters=counts.get("dead_letter", 0),
    )


_MESSAGE_COLUMNS = (
    "message_id, conversation_id, agent_key, status, priority, scheduled_for, enqueued_at, attempts,"
    " max_attempts, payload, last_error, lease_expires_at, claimed_by, finished_at"
)


def _record(row: tuple[Any, ...]) -> MessageRecord:
    names = [name.strip() for name in _MESSAGE_COLUMNS.split(",")]
    fields = dict(zip(names, row, strict=True))
    fields["payload"] = MessagePayload.model_validate_json(fields["payload"])
    if fields["status"] != "processing":
        fields["lease_expires_at"] = None  # a settled message's old expiry means nothing
    return MessageRecord.model_validate(fields)


def get_message(conn: sqlite3.Connection, message_id: str) -> MessageRecord | None:
    row = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE message_id = ?", (message_id,)).fetchone()
    return None if row is None else _record(row)


def conversation_records(conn: sqlite3.Connection, conversation_id: str, limit: int) -> list[MessageRecord]:
    rows = conn.execute(
        f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?",
        (conversation_id, limit),
    ).fetchall()
    return [_record(row) for row in reversed(rows)]


def list_profiles(conn: sqlite3.Connection) -> list[AgentProfile]:
    rows = conn.execute("SELECT profile FROM agent_profiles ORDER BY agent_key").fetchall()
    return [AgentProfile.model_validate_json(row[0]) for row in rows]
