"""The front door's transactions: Telegram updates, webhooks, pairing codes, bindings, app reads.

Each function runs inside a transaction its caller opened and takes ``now`` from the caller; the
rules (rate limits, time-to-live, naming) are in :mod:`contracts.ingress`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence

from contracts.errors import AgentUnavailable, ConversationConflict, InvalidInput
from contracts.ingress import (
    ConversationMessage,
    IdentityBinding,
    IngestResult,
    PairingAttempt,
    PairingCode,
    PairingCodeRequest,
    PairingOutcome,
    PairingResult,
    TelegramUpdateRecord,
    TelegramWebhook,
    bound_conversation_id,
    next_failure_window,
    normalize_pairing_code,
    pairing_rate_limited,
    pairing_ttl_ms,
)
from contracts.sqlite import queue

TokenSource = Callable[[], str]
# Telegram retries an update for at most a day; ids older than this cannot come back.
UPDATE_MEMORY_MS = 3 * 24 * 3_600_000
_PRUNE_EVERY = 1024


# --------------------------------------------------------------------------- updates


def ingest_update(
    conn: sqlite3.Connection, record: TelegramUpdateRecord, now: int, new_id: TokenSource
) -> IngestResult:
    """Remember the update and enqueue its message in the same transaction: both or neither."""
    seen = conn.execute(
        "SELECT message_id FROM telegram_updates WHERE bot_id = ? AND update_id = ?",
        (record.bot_id, record.update_id),
    ).fetchone()
    if seen is not None:
        return IngestResult(duplicate=True, message_id=seen[0])
    message_id = None
    if record.request is not None:
        message_id, _ = queue.enqueue(conn, record.request, now, new_id)
    conn.execute(
        "INSERT INTO telegram_updates (bot_id, update_id, message_id, received_at) VALUES (?, ?, ?, ?)",
        (record.bot_id, record.update_id, message_id, now),
    )
    if record.update_id % _PRUNE_EVERY == 0:
        # Amortised: one indexed range delete per thousand updates keeps the table to a few days.
        conn.execute("DELETE FROM telegram_updates WHERE received_at < ?", (now - UPDATE_MEMORY_MS,))
    return IngestResult(duplicate=False, message_id=message_id)


def ingest_updates(
    conn: sqlite3.Connection, records: Sequence[TelegramUpdateRecord], now: int, new_id: TokenSource
) -> list[IngestResult]:
    """Each record in its own savepoint of one transaction: a refused one leaves no trace."""
    out: list[IngestResult] = []
    for record in records:
        conn.execute("SAVEPOINT ingest")
        try:
            out.append(ingest_update(conn, record, now, new_id))
        except (AgentUnavailable, ConversationConflict, InvalidInput) as exc:
            conn.execute("ROLLBACK TO ingest")
            out.append(IngestResult(duplicate=False, refused=str(exc)))
        conn.execute("RELEASE ingest")
    return out


# --------------------------------------------------------------------------- webhooks

_WEBHOOK_COLUMNS = "agent_key, bot_id, secret_hash, bot_username, url, configured_at"


def _webhook(row: tuple[str, str, str, str | None, str | None, int] | None) -> TelegramWebhook | None:
    if row is None:
        return None
    agent_key, bot_id, secret_hash, username, url, at = row
    return TelegramWebhook(
        agent_key=agent_key, bot_id=bot_id, secret_hash=secret_hash, bot_username=username, url=url, configured_at=at
    )


def set_webhook(conn: sqlite3.Connection, webhook: TelegramWebhook, now: int) -> TelegramWebhook:
    stored = webhook.model_copy(update={"configured_at": now})
    conn.execute(
        f"INSERT OR REPLACE INTO telegram_webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
        (stored.agent_key, stored.bot_id, stored.secret_hash, stored.bot_username, stored.url, now),
    )
    return stored


def get_webhook(conn: sqlite3.Connection, agent_key: str) -> TelegramWebhook | None:
    return _webhook(
        conn.execute(f"SELECT {_WEBHOOK_COLUMNS} FROM telegram_webhooks WHERE agent_key = ?", (agent_key,)).fetchone()
    )


def find_webhook(conn: sqlite3.Connection, secret_hash: str) -> TelegramWebhook | None:
    return _webhook(
        conn.execute(
            f"SELECT {_WEBHOOK_COLUMNS} FROM telegram_webhooks WHERE secret_hash = ?", (secret_hash,)
        ).fetchone()
    )


# --------------------------------------------------------------------------- pairing codes

_CODE_COLUMNS = (
    "code, agent_key, status, created_at, expires_at, consumer_user_id, used_at, telegram_user_id, telegram_chat_id"
)


def _code(row: tuple[str, str, str, int, int, str | None, int | None, str | None, str | None], now: int) -> PairingCode:
    code, agent, status, created, expires, consumer, used, user, chat = row
    if status == "pending" and expires <= now:
        status = "expired"
    return PairingCode(
        code=code,
        agent_key=agent,
        status=status,  # type: ignore[arg-type]  # reason: the CHECK constraint keeps it to the literal's values
        created_at=created,
        expires_at=expires,
        consumer_user_id=consumer,
        used_at=used,
        telegram_user_id=user,
        telegram_chat_id=chat,
    )


def create_pairing_code(conn: sqlite3.Connection, request: PairingCodeRequest, now: int) -> PairingCode:
    queue.check_agent(conn, request.agent_key)
    if request.consumer_user_id is not None:
        # One pending code per user and agent: a new code supersedes the last.
        conn.execute(
            "UPDATE pairing_codes SET status = 'expired' WHERE status = 'pending' AND consumer_user_id = ?"
            " AND agent_key = ?",
            (request.consumer_user_id, request.agent_key),
        )
    code = normalize_pairing_code(request.code)
    expires = now + pairing_ttl_ms(request.ttl_ms)
    conn.execute(
        "INSERT INTO pairing_codes (code, agent_key, status, created_at, expires_at, consumer_user_id)"
        " VALUES (?, ?, 'pending', ?, ?, ?)",
        (code, request.agent_key, now, expires, request.consumer_user_id),
    )
    return PairingCode(
        code=code,
        agent_key=request.agent_key,
        status="pending",
        created_at=now,
        expires_at=expires,
        consumer_user_id=request.consumer_user_id,
    )


def get_pairing_code(conn: sqlite3.Connection, code: str, now: int) -> PairingCode | None:
    row = conn.execute(
        f"SELECT {_CODE_COLUMNS} FROM pairing_codes WHERE code = ?", (normalize_pairing_code(code),)
    ).fetchone()
    return None if row is None else _code(row, now)


def list_pairing_codes(conn: sqlite3.Connection, limit: int, now: int) -> list[PairingCode]:
    rows = conn.execute(
        f"SELECT {_CODE_COLUMNS} FROM pairing_codes ORDER BY created_at DESC, code LIMIT ?", (limit,)
    ).fetchall()
    return [_code(row, now) for row in rows]


def _record_failure(
    conn: sqlite3.Connection, attempt: PairingAttempt, outcome: PairingOutcome, now: int
) -> PairingResult:
    row = conn.execute(
        "SELECT window_started_at, failures FROM pairing_failures WHERE bot_id = ? AND telegram_user_id = ?",
        (attempt.bot_id, attempt.telegram_user_id),
    ).fetchone()
    started, failures = next_failure_window(row[0] if row else None, row[1] if row else 0, now)
    conn.execute(
        "INSERT OR REPLACE INTO pairing_failures (bot_id, telegram_user_id, window_started_at, failures)"
        " VALUES (?, ?, ?, ?)",
        (attempt.bot_id, attempt.telegram_user_id, started, failures),
    )
    return PairingResult(outcome=outcome)


def consume_pairing_code(
    conn: sqlite3.Connection, attempt: PairingAttempt, now: int, new_id: TokenSource
) -> PairingResult:
    failures = conn.execute(
        "SELECT window_started_at, failures FROM pairing_failures WHERE bot_id = ? AND telegram_user_id = ?",
        (attempt.bot_id, attempt.telegram_user_id),
    ).fetchone()
    if failures is not None and pairing_rate_limited(failures[1], failures[0], now):
        return PairingResult(outcome="rate_limited")
    code = get_pairing_code(conn, attempt.code, now)
    if code is None:
        return _record_failure(conn, attempt, "unknown", now)
    if code.status == "used":
        if code.telegram_user_id == attempt.telegram_user_id:
            # Telegram redelivered the same /start: report the pairing it made.
            binding = resolve_binding(conn, attempt.bot_id, attempt.telegram_user_id)
            return PairingResult(outcome="paired", agent_key=code.agent_key, binding=binding)
        return _record_failure(conn, attempt, "used", now)
    if code.status == "expired":
        conn.execute("UPDATE pairing_codes SET status = 'expired' WHERE code = ?", (code.code,))
        return _record_failure(conn, attempt, "expired", now)
    user = code.consumer_user_id or f"telegram:{attempt.bot_id}:{attempt.telegram_user_id}"
    conn.execute(
        "UPDATE identity_bindings SET status = 'revoked', revoked_at = ?"
        " WHERE bot_id = ? AND telegram_user_id = ? AND status = 'active'",
        (now, attempt.bot_id, attempt.telegram_user_id),
    )
    binding = IdentityBinding(
        binding_id="bind_" + new_id().removeprefix("msg_"),
        agent_key=code.agent_key,
        bot_id=attempt.bot_id,
        telegram_user_id=attempt.telegram_user_id,
        telegram_chat_id=attempt.telegram_chat_id,
        consumer_user_id=code.consumer_user_id,
        conversation_id=bound_conversation_id(code.agent_key, user),
        status="active",
        source="telegram_pairing",
        bound_at=now,
    )
    conn.execute(
        f"INSERT INTO identity_bindings ({_BINDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, NULL)",
        (
            binding.binding_id,
            binding.agent_key,
            binding.bot_id,
            binding.telegram_user_id,
            binding.telegram_chat_id,
            binding.consumer_user_id,
            binding.conversation_id,
            binding.source,
            now,
        ),
    )
    conn.execute(
        "UPDATE pairing_codes SET status = 'used', used_at = ?, telegram_user_id = ?, telegram_chat_id = ?"
        " WHERE code = ?",
        (now, attempt.telegram_user_id, attempt.telegram_chat_id, code.code),
    )
    conn.execute(
        "DELETE FROM pairing_failures WHERE bot_id = ? AND telegram_user_id = ?",
        (attempt.bot_id, attempt.telegram_user_id),
    )
    return PairingResult(outcome="paired", agent_key=code.agent_key, binding=binding)


# --------------------------------------------------------------------------- bindings

_BINDING_COLUMNS = (
    "binding_id, agent_key, bot_id, telegram_user_id, telegram_chat_id, consumer_user_id, conversation_id,"
    " status, source, bound_at, revoked_at"
)


def _binding(row: tuple[object, ...]) -> IdentityBinding:
    names = [name.strip() for name in _BINDING_COLUMNS.split(",")]
    return IdentityBinding.model_validate(dict(zip(names, row, strict=True)))


def resolve_binding(conn: sqlite3.Connection, bot_id: str, telegram_user_id: str) -> IdentityBinding | None:
    row = conn.execute(
        f"SELECT {_BINDING_COLUMNS} FROM identity_bindings"
        " WHERE bot_id = ? AND telegram_user_id = ? AND status = 'active'",
        (bot_id, telegram_user_id),
    ).fetchone()
    return None if row is None else _binding(row)


def list_bindings(conn: sqlite3.Connection, agent_key: str | None, include_revoked: bool) -> list[IdentityBinding]:
    sql = f"SELECT {_BINDING_COLUMNS} FROM identity_bindings WHERE (? IS NULL OR agent_key = ?)"
    if not include_revoked:
        sql += " AND status = 'active'"
    rows = conn.execute(sql + " ORDER BY bound_at, binding_id", (agent_key, agent_key)).fetchall()
    return [_binding(row) for row in rows]


def revoke_binding(conn: sqlite3.Connection, binding_id: str, now: int) -> bool:
    cursor = conn.execute(
        "UPDATE identity_bindings SET status = 'revoked', revoked_at = ? WHERE binding_id = ? AND status = 'active'",
        (now, binding_id),
    )
    return cursor.rowcount == 1


# --------------------------------------------------------------------------- the app API's reads


def conversation_messages(conn: sqlite3.Connection, conversation_id: str, limit: int) -> list[ConversationMessage]:
    rows = conn.execute(
        "SELECT message_id, status, payload, enqueued_at, external_message_id, finished_at, last_error"
        " FROM messages WHERE conversation_id = ? ORDER BY seq DESC LIMIT ?",
        (conversation_id, limit),
    ).fetchall()
    replies: dict[str, str] = {}
    if rows:
        ids = [row[0] for row in rows]
        marks = ",".join("?" * len(ids))
        for source, content in conn.execute(
            f"SELECT source_message_id, content FROM history WHERE source_message_id IN ({marks})"
            " AND role = 'assistant' ORDER BY idx",
            ids,
        ):
            replies[source] = content
    return [
        ConversationMessage(
            message_id=mid,
            status=status,
            text=json.loads(payload)["messageText"],
            enqueued_at=enqueued,
            external_message_id=external,
            reply=replies.get(mid),
            finished_at=finished,
            last_error=error,
        )
        for mid, status, payload, enqueued, external, finished, error in reversed(rows)
    ]
