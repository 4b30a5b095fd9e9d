"""The queue's transactions: enqueue, heartbeat, fail, release, sweep, redrive (claims and
completes are in :mod:`contracts.sqlite.claim`), and the conversation heads they keep.

Each function runs inside a transaction its caller opened and takes ``now`` from the caller,
so the rules in :mod:`contracts.rules` decide and this module only reads and writes rows.

Invariants kept here (the state-machine test checks them after every step):

* A conversation's head is its one processing message if it has one, else its earliest
  queued message. Only a head is ever claimed, so at most one message per conversation is
  in flight and delivery follows enqueue order.
* Heartbeat, complete and fail change a row only when status, lease id, worker and expiry
  all match; anything else changes nothing.
* A message is open (queued or processing) exactly while ``finished_at`` is NULL: the index of
  open messages is keyed on that, so a claim, which changes a status but not its openness,
  leaves the index alone.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.errors import AgentUnavailable, ConversationConflict
from contracts.models import (
    RECENT_GAPS,
    ControlState,
    EnqueueRequest,
    FailRequest,
    FailResult,
    LeaseRef,
    LeaseRefusal,
    LeaseResult,
    ReleaseRequest,
    ReleaseResult,
)
from contracts.rules import (
    QueuePolicy,
    RandomSource,
    attempts_after_release,
    backoff_ms,
    heartbeat_due,
    lease_expiry,
    out_of_attempts,
    stop_reason,
)

TokenSource = Callable[[], str]
LEASE_TTL_SQL = "SELECT value FROM store_config WHERE key = 'lease_ttl_ms'"

_HEAD_COLUMNS = "seq, status, priority, scheduled_for, attempts, lease_expires_at, claimed_by"
_NEXT_SQL = f"""
    SELECT {_HEAD_COLUMNS} FROM messages
    WHERE conversation_id = ? AND finished_at IS NULL
    ORDER BY arrival_at, seq
    LIMIT 1
"""
_SET_HEAD_SQL = (
    "UPDATE conversations SET head_seq = ?, head_status = ?, head_priority = ?, head_scheduled_for = ?,"
    " head_attempts = ?, available_at = ?, lock_worker = ? WHERE conversation_id = ?"
)
# The head after the conversation's processing message settled, written in one statement: its
# earliest open message (none processing now), or nothing.
_ADVANCE_HEAD_SQL = """
    UPDATE conversations SET (head_seq, head_status, head_priority, head_scheduled_for, head_attempts,
                              available_at, lock_worker) = (
        SELECT seq, status, priority, scheduled_for, attempts, scheduled_for, NULL FROM messages
        WHERE conversation_id = ?1 AND finished_at IS NULL
        ORDER BY arrival_at, seq
        LIMIT 1)
    WHERE conversation_id = ?1
    RETURNING head_seq IS NOT NULL AND available_at <= ?2
"""


def advance_head(conn: sqlite3.Connection, conversation_id: str, now: int) -> bool:
    """The head after the conversation's processing message settled; True when it is due now."""
    row = conn.execute(_ADVANCE_HEAD_SQL, (conversation_id, now)).fetchone()
    return row is not None and bool(row[0])


def refresh_head(conn: sqlite3.Connection, conversation_id: str, *, settled: bool = False) -> None:
    """Recompute a conversation's head after its open messages changed.

    ``settled`` says the caller just finished the conversation's processing message, so no
    message of it can be processing now and the current head need not be checked.
    """
    if settled:
        advance_head(conn, conversation_id, 0)
        return
    # A processing message is always the head; while it runs, the head does not move.
    row = conn.execute(
        f"SELECT {_HEAD_COLUMNS} FROM messages WHERE status = 'processing' AND seq ="
        " (SELECT head_seq FROM conversations WHERE conversation_id = ? AND head_status = 'processing')",
        (conversation_id,),
    ).fetchone()
    if row is None:
        row = conn.execute(_NEXT_SQL, (conversation_id,)).fetchone()
    if row is None:
        conn.execute(_SET_HEAD_SQL, (None, None, None, None, None, None, None, conversation_id))
        return
    seq, status, priority, scheduled_for, attempts, lease_expires_at, claimed_by = row
    processing = status == "processing"
    available_at = lease_expires_at if processing else scheduled_for
    lock = claimed_by if processing else None
    conn.execute(_SET_HEAD_SQL, (seq, status, priority, scheduled_for, attempts, available_at, lock, conversation_id))


# --------------------------------------------------------------------------- enqueue


def check_agent(conn: sqlite3.Connection, agent_key: str) -> None:
    row = conn.execute("SELECT enabled FROM agent_profiles WHERE agent_key = ?", (agent_key,)).fetchone()
    if row is None:
        raise AgentUnavailable(agent_key, "not defined")
    if not row[0]:
        raise AgentUnavailable(agent_key, "disabled")


def enqueue(conn: sqlite3.Connection, request: EnqueueRequest, now: int, new_id: TokenSource) -> tuple[str, bool]:
    """Insert a message; returns (message id, created). A duplicate external id is not created."""
    payload = request.payload
    if payload.external_message_id is not None:
        existing = conn.execute(
            "SELECT message_id FROM messages WHERE conversation_id = ? AND external_message_id = ?",
            (request.conversation_id, payload.external_message_id),
        ).fetchone()
        if existing is not None:
            return str(existing[0]), False
    check_agent(conn, request.agent_key)
    owner = conn.execute(
        "SELECT agent_key FROM conversations WHERE conversation_id = ?", (request.conversation_id,)
    ).fetchone()
    if owner is None:
        conn.execute(
            "INSERT INTO conversations (conversation_id, agent_key, created_at, user_id) VALUES (?, ?, ?, ?)",
            (request.conversation_id, request.agent_key, now, payload.provider_user_id),
        )
    elif owner[0] != request.agent_key:
        raise ConversationConflict(request.conversation_id, owner[0], request.agent_key)
    message_id = new_id()
    scheduled_for = now if request.scheduled_for is None else request.scheduled_for
    conn.execute(
        "INSERT INTO messages (message_id, conversation_id, agent_key, payload, external_message_id, status,"
        " priority, scheduled_for, arrival_at, enqueued_at, max_attempts)"
        " VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
        (
            message_id,
            request.conversation_id,
            request.agent_key,
            payload.model_dump_json(by_alias=True, exclude_none=True),
            payload.external_message_id,
            request.priority,
            scheduled_for,
            max(scheduled_for, now),
            now,
            request.max_attempts,
        ),
    )
    if request.scheduled_for is None or request.scheduled_for <= now:
        note_arrival(conn, request.conversation_id, now)
    # The new message may arrive before a head that is only scheduled for later.
    refresh_head(conn, request.conversation_id)
    return message_id, True


# --------------------------------------------------------------------------- store settings


def lease_ttl_ms(conn: sqlite3.Connection) -> int:
    """The store's lease length (``store_config``): one value for every process on the file."""
    return int(conn.execute(LEASE_TTL_SQL).fetchone()[0])


def set_lease_ttl_ms(conn: sqlite3.Connection, ttl_ms: int) -> int:
    """Record a new lease length; returns the previous one. Leases already granted keep theirs."""
    previous = lease_ttl_ms(conn)
    conn.execute("UPDATE store_config SET value = ? WHERE key = 'lease_ttl_ms'", (str(ttl_ms),))
    return previous


# --------------------------------------------------------------------------- the worker's row


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """What a worker's calls need of its row: whether it may claim, and whether to rewrite it."""

    worker_id: str
    status: str
    reason: str | None
    heartbeat_at: int
    busy: bool

    def control(self) -> ControlState:
        why = stop_reason(self.status, self.reason)
        return CARRY_ON if why is None else ControlState(should_stop=True, reason=why)


CARRY_ON = ControlState(should_stop=False)
UNKNOWN_WORKER = ControlState(should_stop=True, reason="unknown worker: register before polling")


def worker_row(conn: sqlite3.Connection, worker_id: str) -> WorkerRow | None:
    row = conn.execute(
        "SELECT status, status_reason, heartbeat_at, busy_since IS NOT NULL FROM workers WHERE worker_id = ?",
        (worker_id,),
    ).fetchone()
    return None if row is None else WorkerRow(worker_id, row[0], row[1], row[2], bool(row[3]))


def control_of(worker: WorkerRow | None) -> ControlState:
    return UNKNOWN_WORKER if worker is None else worker.control()


def refresh_heartbeat(conn: sqlite3.Connection, worker: WorkerRow | None, now: int) -> None:
    """Rewrite a worker's heartbeat when it is due (rules.heartbeat_due), else leave the row be."""
    if worker is not None and heartbeat_due(worker.heartbeat_at, now):
        conn.execute("UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?", (now, worker.worker_id))


# --------------------------------------------------------------------------- settle

FENCE = "message_id = ? AND lease_id = ? AND claimed_by = ? AND status = 'processing' AND lease_expires_at > ?"


def fence_args(lease: LeaseRef, now: int) -> tuple[str, str, str, int]:
    return (lease.message_id, lease.lease_id, lease.worker_id, now)


def _release_worker(conn: sqlite3.Connection, worker_id: str, now: int) -> None:
    conn.execute(
        "UPDATE workers SET heartbeat_at = ?, busy_since = NULL, idle_since = ? WHERE worker_id = ?",
        (now, now, worker_id),
    )


def _under_lease(conn: sqlite3.Connection, lease: LeaseRef, columns: str, *statuses: str) -> tuple[Any, ...] | None:
    """The message as this lease left it, if it is in one of ``statuses`` (the replay checks)."""
    marks = ", ".join("?" * len(statuses))
    row: tuple[Any, ...] | None = conn.execute(
        f"SELECT {columns} FROM messages WHERE message_id = ? AND lease_id = ? AND claimed_by = ?"
        f" AND status IN ({marks})",
        (lease.message_id, lease.lease_id, lease.worker_id, *statuses),
    ).fetchone()
    return row


def refusal(conn: sqlite3.Connection, lease: LeaseRef, now: int) -> LeaseRefusal:
    """Why a fenced call found nothing to change (only asked on that cold path)."""
    row = conn.execute(
        "SELECT status, lease_id, claimed_by, lease_expires_at FROM messages WHERE message_id = ?",
        (lease.message_id,),
    ).fetchone()
    if row is None:
        return "unknown_message"
    status, lease_id, claimed_by, expires = row
    ours = lease_id == lease.lease_id and claimed_by == lease.worker_id
    if ours and status == "processing" and expires is not None and expires <= now:
        return "lease_expired"
    return "lease_lost"


def heartbeat(conn: sqlite3.Connection, lease: LeaseRef, now: int) -> LeaseResult:
    expires = lease_expiry(now, lease_ttl_ms(conn))
    row = conn.execute(
        f"UPDATE messages SET lease_expires_at = ? WHERE {FENCE} RETURNING conversation_id",
        (expires, *fence_args(lease, now)),
    ).fetchone()
    worker = worker_row(conn, lease.worker_id)
    if row is None:
        return LeaseResult(ok=False, refused=refusal(conn, lease, now), now=now, control=control_of(worker))
    conn.execute("UPDATE conversations SET available_at = ? WHERE conversation_id = ?", (expires, row[0]))
    refresh_heartbeat(conn, worker, now)
    return LeaseResult(ok=True, lease_expires_at=expires, now=now, control=control_of(worker))


def dead_letter(conn: sqlite3.Connection, seq: int, now: int, reason: str, *, clear_lease: bool) -> None:
    conn.execute(
        "UPDATE messages SET status = 'dead_letter', last_error = ?, finished_at = ?, lease_expires_at = NULL"
        + (", lease_id = NULL" if clear_lease else "")
        + " WHERE seq = ?",
        (reason, now, seq),
    )


def fail(
    conn: sqlite3.Connection, request: FailRequest, now: int, policy: QueuePolicy, rng: RandomSource
) -> FailResult:
    lease = request.lease
    owned = conn.execute(
        f"SELECT seq, conversation_id, attempts, max_attempts FROM messages WHERE {FENCE}", fence_args(lease, now)
    ).fetchone()
    if owned is None:
        return _fail_replay(conn, lease, now)
    seq, conv, attempts, max_attempts = owned
    error = request.error_message[:4000]
    _release_worker(conn, lease.worker_id, now)
    if not request.retryable or out_of_attempts(attempts, max_attempts):
        why = "not retryable" if not request.retryable else f"out of attempts ({attempts}/{max_attempts})"
        dead_letter(conn, seq, now, f"{why}: {error}", clear_lease=False)
        refresh_head(conn, conv, settled=True)
        return FailResult(requeued=False, dead_lettered=True)
    next_at = now + backoff_ms(attempts, policy, rng)
    conn.execute(
        "UPDATE messages SET status = 'queued', scheduled_for = ?, lease_expires_at = NULL, last_error = ?"
        " WHERE seq = ?",
        (next_at, error, seq),
    )
    refresh_head(conn, conv, settled=True)
    return FailResult(requeued=True, dead_lettered=False, next_scheduled_for=next_at)


def _fail_replay(conn: sqlite3.Connection, lease: LeaseRef, now: int) -> FailResult:
    row = _under_lease(conn, lease, "status, scheduled_for", "queued", "dead_letter")
    if row is None:
        return FailResult(requeued=False, dead_lettered=False, refused=refusal(conn, lease, now))
    if row[0] == "dead_letter":
        return FailResult(requeued=False, dead_lettered=True)
    return FailResult(requeued=True, dead_lettered=False, next_scheduled_for=int(row[1]))


def release(conn: sqlite3.Connection, request: ReleaseRequest, now: int) -> LeaseResult:
    """Give a message back without spending an attempt (the fault was not the message's).

    Fenced by the lease id and worker, but not by the expiry: a lease that ran out while its
    worker could not reach the store is still nobody else's until a claim takes it over, and
    giving it back is safe. The message keeps its place (arrival and schedule are untouched).
    """
    lease = request.lease
    row = _under_lease(conn, lease, "seq, conversation_id, attempts, status", "processing", "queued")
    if row is None:
        refused = refusal(conn, lease, now)
        _give_back_superseded(conn, lease)
        return LeaseResult(ok=False, refused=refused, now=now)
    seq, conv, attempts, status = row
    if status == "queued":
        return LeaseResult(ok=True, now=now)  # a replay: the first call gave it back already
    conn.execute(
        "UPDATE messages SET status = 'queued', attempts = ?, lease_expires_at = NULL, last_error = ? WHERE seq = ?",
        (attempts_after_release(attempts), f"released: {request.reason}"[:4000], seq),
    )
    refresh_head(conn, conv, settled=True)
    _release_worker(conn, lease.worker_id, now)
    return LeaseResult(ok=True, now=now)


def _give_back_superseded(conn: sqlite3.Connection, lease: LeaseRef) -> None:
    """A lease that ran out while its worker could not reach the store, and was taken over or
    swept meanwhile: the message is no longer this worker's, but the attempt its claim counted was
    not the message's fault. Given back once (the mark is cleared)."""
    row = conn.execute(
        "SELECT seq, conversation_id, attempts FROM messages WHERE message_id = ? AND superseded_lease_id = ?"
        " AND status IN ('processing', 'queued')",
        (lease.message_id, lease.lease_id),
    ).fetchone()
    if row is None:
        return
    seq, conv, attempts = row
    conn.execute(
        "UPDATE messages SET attempts = ?, superseded_lease_id = NULL WHERE seq = ?",
        (attempts_after_release(attempts), seq),
    )
    refresh_head(conn, conv)  # the head caches its attempts


# --------------------------------------------------------------------------- sweep and redrive


def release_expired(conn: sqlite3.Connection, now: int) -> ReleaseResult:
    """Return expired leases to the queue, or to the dead letter when out of attempts."""
    rows = conn.execute(
        "SELECT m.seq, m.conversation_id, m.attempts, m.max_attempts, m.claimed_by, c.available_at"
        " FROM conversations AS c INDEXED BY conversations_claim JOIN messages AS m ON m.seq = c.head_seq"
        " WHERE c.head_seq IS NOT NULL AND c.head_status = 'processing' AND c.available_at <= ?",
        (now,),
    ).fetchall()
    released = dead = 0
    for seq, conv, attempts, max_attempts, worker_id, expired_at in rows:
        if out_of_attempts(attempts, max_attempts):
            dead_letter(conn, seq, now, f"lease expired on attempt {attempts} of {max_attempts}", clear_lease=True)
            dead += 1
        else:
            # Claimable since its lease expired, as before the sweep: sweeping moves nobody's place.
            conn.execute(
                "UPDATE messages SET status = 'queued', scheduled_for = ?, lease_id = NULL,"
                " superseded_lease_id = lease_id, lease_expires_at = NULL,"
                " last_error = 'lease expired while processing' WHERE seq = ?",
                (expired_at, seq),
            )
            released += 1
        refresh_head(conn, conv, settled=True)
        conn.execute(
            "UPDATE workers SET busy_since = NULL, idle_since = ? WHERE worker_id = ? AND busy_since IS NOT NULL",
            (now, worker_id),
        )
    return ReleaseResult(released=released, dead_lettered=dead)


def redrive(conn: sqlite3.Connection, message_id: str | None, now: int) -> list[str]:
    """Put dead letters back in their place in their conversation, with fresh attempts."""
    if message_id is None:
        rows = conn.execute("SELECT seq, message_id, conversation_id FROM messages WHERE status = 'dead_letter'")
    else:
        rows = conn.execute(
            "SELECT seq, message_id, conversation_id FROM messages WHERE status = 'dead_letter' AND message_id = ?",
            (message_id,),
        )
    found = rows.fetchall()
    for seq, _, _ in found:
        conn.execute(
            "UPDATE messages SET status = 'queued', attempts = 0, scheduled_for = ?, lease_id = NULL,"
            " lease_expires_at = NULL, claimed_by = NULL, finished_at = NULL WHERE seq = ?",
            (now, seq),
        )
    for conv in {row[2] for row in found}:
        refresh_head(conn, conv)
    return [str(row[1]) for row in found]


def note_arrival(conn: sqlite3.Connection, conversation_id: str, now: int) -> None:
    """Remember a message arriving now (not one scheduled for later): the keep-warm evidence."""
    last, gaps = conn.execute(
        "SELECT last_arrival_at, arrival_gaps FROM conversations WHERE conversation_id = ?", (conversation_id,)
    ).fetchone()
    recent: list[int] = json.loads(gaps) if gaps else []
    if last is not None:
        recent = [max(0, now - last), *recent][:RECENT_GAPS]
    conn.execute(
        "UPDATE conversations SET last_arrival_at = ?, arrival_gaps = ? WHERE conversation_id = ?",
        (now, json.dumps(recent), conversation_id),
    )
