"""The operator console's reads and sign-in: conversation search, settled messages, the latest
reconcile, operator tokens and console sessions.

Each function runs inside a transaction its caller opened and takes ``now`` from the caller.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Literal

from contracts.console import SESSION_MEMORY_MS, ConsoleSession, OperatorToken
from contracts.models import ConversationSummary, ReconcileRecord, SettledSample, SettledWindow

# --------------------------------------------------------------------------- conversations

_SUMMARY_COLUMNS = "conversation_id, agent_key, created_at, user_id"


def search_conversations(conn: sqlite3.Connection, query: str, limit: int) -> list[ConversationSummary]:
    if not query:
        rows = conn.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM conversations ORDER BY created_at DESC, conversation_id LIMIT ?",
            (limit,),
        ).fetchall()
    else:
        # Three index ranges: the id prefix (the primary key), the agent, the user who started it.
        rows = conn.execute(
            f"""
            SELECT {_SUMMARY_COLUMNS} FROM conversations
             WHERE conversation_id >= :q AND conversation_id < :q || char(1114111)
            UNION
            SELECT {_SUMMARY_COLUMNS} FROM conversations WHERE agent_key = :q
            UNION
            SELECT {_SUMMARY_COLUMNS} FROM conversations WHERE user_id = :q
            ORDER BY created_at DESC, conversation_id LIMIT :limit
            """,
            {"q": query, "limit": limit},
        ).fetchall()
    return [_summary(conn, row) for row in rows]


def _summary(conn: sqlite3.Connection, row: tuple[Any, ...]) -> ConversationSummary:
    conversation_id, agent_key, created_at, user_id = row
    counts = dict(
        conn.execute(
            "SELECT status, count(*) FROM messages WHERE conversation_id = ? GROUP BY status", (conversation_id,)
        ).fetchall()
    )
    return ConversationSummary(
        conversation_id=conversation_id,
        agent_key=agent_key,
        created_at=created_at,
        user_id=user_id,
        queued=counts.get("queued", 0),
        processing=counts.get("processing", 0),
        done=counts.get("done", 0),
        dead_letters=counts.get("dead_letter", 0),
    )


# --------------------------------------------------------------------------- throughput


def settled_since(conn: sqlite3.Connection, since_ms: int, limit: int, now: int) -> SettledWindow:
    samples: list[SettledSample] = []
    kinds: tuple[tuple[Literal["done", "dead_letter"], str], ...] = (
        ("done", "messages_done"),
        ("dead_letter", "messages_dead"),
    )
    for status, index in kinds:
        rows = conn.execute(
            # The status is written out: a partial index serves only a query that names its value.
            f"SELECT enqueued_at, finished_at, attempts FROM messages INDEXED BY {index}"
            f" WHERE status = '{status}' AND finished_at >= ? ORDER BY finished_at DESC LIMIT ?",
            (since_ms, limit + 1),
        ).fetchall()
        samples += [SettledSample(status=status, enqueued_at=e, finished_at=f, attempts=a) for e, f, a in rows]
    samples.sort(key=lambda s: s.finished_at, reverse=True)
    return SettledWindow(since=since_ms, now=now, samples=samples[:limit], truncated=len(samples) > limit)


# --------------------------------------------------------------------------- the latest reconcile


def record_reconcile(conn: sqlite3.Connection, record: ReconcileRecord) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO reconcile_last (slot, body) VALUES (1, ?)",
        (record.model_dump_json(by_alias=True, exclude_none=True),),
    )


def last_reconcile(conn: sqlite3.Connection) -> ReconcileRecord | None:
    row = conn.execute("SELECT body FROM reconcile_last WHERE slot = 1").fetchone()
    return None if row is None else ReconcileRecord.model_validate_json(row[0])


# --------------------------------------------------------------------------- operator tokens

_TOKEN_COLUMNS = "token_id, name, role, token_hash, created_at, revoked_at"


def _token(row: tuple[Any, ...]) -> OperatorToken:
    names = [name.strip() for name in _TOKEN_COLUMNS.split(",")]
    return OperatorToken.model_validate(dict(zip(names, row, strict=True)))


def create_operator_token(conn: sqlite3.Connection, token: OperatorToken) -> OperatorToken:
    conn.execute(
        f"INSERT INTO operator_tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL)",
        (token.token_id, token.name, token.role, token.token_hash, token.created_at),
    )
    return token


def find_operator_token(conn: sqlite3.Connection, token_hash: str) -> OperatorToken | None:
    row = conn.execute(
        f"SELECT {_TOKEN_COLUMNS} FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,)
    ).fetchone()
    return None if row is None else _token(row)


def list_operator_tokens(conn: sqlite3.Connection) -> list[OperatorToken]:
    rows = conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM operator_tokens ORDER BY created_at, token_id").fetchall()
    return [_token(row) for row in rows]


def revoke_operator_token(conn: sqlite3.Connection, token_id: str, now: int) -> bool:
    cursor = conn.execute(
        "UPDATE operator_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL", (now, token_id)
    )
    conn.execute("UPDATE console_sessions SET ended_at = ? WHERE token_id = ? AND ended_at IS NULL", (now, token_id))
    return cursor.rowcount == 1


# --------------------------------------------------------------------------- console sessions

_SESSION_COLUMNS = "session_hash, operator, role, token_id, created_at, expires_at, ended_at"


def create_session(conn: sqlite3.Connection, session: ConsoleSession, now: int) -> ConsoleSession:
    conn.execute("DELETE FROM console_sessions WHERE expires_at < ?", (now - SESSION_MEMORY_MS,))
    conn.execute(
        f"INSERT INTO console_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL)",
        (
            session.session_hash,
            session.operator,
            session.role,
            session.token_id,
            session.created_at,
            session.expires_at,
        ),
    )
    return session


def find_session(conn: sqlite3.Connection, session_hash: str, now: int) -> ConsoleSession | None:
    columns = ", ".join(f"s.{name.strip()}" for name in _SESSION_COLUMNS.split(","))
    row = conn.execute(
        f"SELECT {columns} FROM console_sessions AS s LEFT JOIN operator_tokens AS t ON t.token_id = s.token_id"
        " WHERE s.session_hash = ? AND s.ended_at IS NULL AND s.expires_at > ?"
        " AND (s.token_id IS NULL OR (t.token_id IS NOT NULL AND t.revoked_at IS NULL))",
        (session_hash, now),
    ).fetchone()
    if row is None:
        return None
    names = [name.strip() for name in _SESSION_COLUMNS.split(",")]
    return ConsoleSession.model_validate(dict(zip(names, row, strict=True)))


def end_session(conn: sqlite3.Connection, session_hash: str, now: int) -> bool:
    cursor = conn.execute(
        "UPDATE console_sessions SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL", (now, session_hash)
    )
    return cursor.rowcount == 1
