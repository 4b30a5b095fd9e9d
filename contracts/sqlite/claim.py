"""Claims, and the complete that settles a job and claims the next: a busy worker's hot path.

Each function runs inside a transaction its caller opened, like those of :mod:`contracts.sqlite.queue`.

A claim takes, among conversations without a live lock, the due head with the highest priority,
then the one claimable longest (``available_at``: a queued head's ``scheduled_for``, which for a
retry is when its backoff ends; a processing head's lease expiry), then enqueue order. A message
that comes back, by a retry or an expired lease, is ordered by the moment it came back. A worker
pinned to a conversation claims that one only, and while it holds it (active, heard from within
:data:`contracts.rules.HOLD_MS`) no unpinned worker takes it: the agent's memory is on its machine.

A worker's row is written only when its state changes (idle → busy at a claim, busy → idle at a
complete that claims nothing next) or when its recorded heartbeat is due for a refresh
(:func:`contracts.rules.heartbeat_due`): a complete that chains into the next claim leaves it be.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from contracts.models import (
    AppendRequest,
    ClaimedJob,
    ClaimResult,
    CompleteResult,
    ControlState,
    HistoryMessage,
    LeaseRef,
    MessagePayload,
    NextClaim,
)
from contracts.rules import HOLD_MS, heartbeat_due, lease_expiry, out_of_attempts
from contracts.secrets import SecretBox
from contracts.sqlite import agents, runtime
from contracts.sqlite.queue import (
    FENCE,
    LEASE_TTL_SQL,
    TokenSource,
    WorkerRow,
    advance_head,
    control_of,
    dead_letter,
    fence_args,
    refresh_head,
    refusal,
    worker_row,
)

# A conversation held by the worker pinned to it (contracts.rules.holds) is passed over: it is
# that worker's to take, with the agent's memory.
_CANDIDATE_SQL = f"""
    SELECT conversation_id, head_seq, head_status, head_attempts, ({LEASE_TTL_SQL})
    FROM conversations AS c INDEXED BY conversations_claim
    WHERE head_seq IS NOT NULL AND available_at <= ?1
      AND NOT EXISTS (
        SELECT 1 FROM workers AS w INDEXED BY workers_pinned
        WHERE w.pinned_conversation_id = c.conversation_id AND w.worker_id != ?2
          AND w.status = 'active' AND w.heartbeat_at > ?1 - {HOLD_MS}
      )
    ORDER BY head_priority DESC, available_at, head_seq
    LIMIT 1
"""
_PINNED_SQL = f"""
    SELECT conversation_id, head_seq, head_status, head_attempts, ({LEASE_TTL_SQL})
    FROM conversations
    WHERE conversation_id = ? AND head_seq IS NOT NULL AND available_at <= ?
"""
# Taking over an expired lease keeps its id as superseded (see queue.release).
_LEASE_SQL = (
    "UPDATE messages SET status = 'processing', attempts = attempts + 1, lease_id = ?, lease_expires_at = ?,"
    " claimed_by = ?,"
    " superseded_lease_id = CASE WHEN status = 'processing' THEN lease_id ELSE superseded_lease_id END"
    " WHERE seq = ? RETURNING message_id, agent_key, payload, attempts"
)
_DONE_SQL = (
    f"UPDATE messages SET status = 'done', lease_expires_at = NULL, finished_at = ? WHERE {FENCE}"
    " RETURNING seq, conversation_id, NULL, json_extract(payload, '$.metadata')"
)
# The claimed message stays the head; only its state, lock and availability change.
_LOCK_SQL = (
    "UPDATE conversations SET head_status = 'processing', head_attempts = ?, available_at = ?, lock_worker = ?"
    " WHERE conversation_id = ?"
)


def _claimant(conn: sqlite3.Connection, worker_id: str, now: int) -> WorkerRow:
    found = worker_row(conn, worker_id)
    if found is not None:
        return found
    # A worker that never registered (an upstream-style worker) registers by claiming.
    conn.execute(
        "INSERT INTO workers (worker_id, provider, status, status_since, registered_at, heartbeat_at, idle_since)"
        " VALUES (?, 'unknown', 'active', ?, ?, ?, ?)",
        (worker_id, now, now, now, now),
    )
    return WorkerRow(worker_id, "active", None, now, busy=False)


def _take(
    conn: sqlite3.Connection, worker: WorkerRow, conversation_id: str | None, now: int, new_lease: TokenSource
) -> tuple[ClaimedJob, int] | None:
    """Lease the best due head (or the pinned conversation's), taking over an expired lease.
    Returns the job and its message's ``seq``."""
    if worker.status != "active":
        return None
    while True:
        if conversation_id is None:
            row = conn.execute(_CANDIDATE_SQL, (now, worker.worker_id)).fetchone()
        else:
            row = conn.execute(_PINNED_SQL, (conversation_id, now)).fetchone()
        if row is None:
            return None
        conv, seq, head_status, head_attempts, ttl_ms = row
        if head_status == "processing":
            # The lease expired: that delivery is over. Its attempt was counted at claim.
            max_attempts = conn.execute("SELECT max_attempts FROM messages WHERE seq = ?", (seq,)).fetchone()[0]
            if out_of_attempts(head_attempts, max_attempts):
                reason = f"lease expired on attempt {head_attempts} of {max_attempts}"
                dead_letter(conn, seq, now, reason, clear_lease=True)
                refresh_head(conn, conv, settled=True)
                continue
        lease_id = new_lease()
        expires = lease_expiry(now, int(ttl_ms))
        message_id, agent_key, payload, attempts = conn.execute(
            _LEASE_SQL, (lease_id, expires, worker.worker_id, seq)
        ).fetchone()
        conn.execute(_LOCK_SQL, (attempts, expires, worker.worker_id, conv))
        return _job(message_id, conv, agent_key, payload, attempts, lease_id, expires, now), seq


def _job(
    message_id: str,
    conversation_id: str,
    agent_key: str,
    payload: str,
    attempts: int,
    lease_id: str,
    expires: int,
    now: int,
) -> ClaimedJob:
    return ClaimedJob(
        message_id=message_id,
        conversation_id=conversation_id,
        agent_key=agent_key,
        lease_id=lease_id,
        lease_expires_at=expires,
        attempt=attempts,
        payload=MessagePayload.model_validate_json(payload),
        now=now,
    )


def _record(conn: sqlite3.Connection, worker: WorkerRow, now: int, job: ClaimedJob | None, *, settled: bool) -> None:
    """Write the worker's row when its state changed (``settled``: it just finished its job) or
    its heartbeat is due; a busy worker that stays busy is left alone in between."""
    if job is not None and not worker.busy:
        conn.execute(
            "UPDATE workers SET heartbeat_at = ?, last_claim_at = ?, busy_since = ?, idle_since = NULL,"
            " conversation_id = ? WHERE worker_id = ?",
            (now, now, now, job.conversation_id, worker.worker_id),
        )
    elif job is None and settled and worker.busy:
        conn.execute(
            "UPDATE workers SET heartbeat_at = ?, busy_since = NULL, idle_since = ? WHERE worker_id = ?",
            (now, now, worker.worker_id),
        )
    elif heartbeat_due(worker.heartbeat_at, now):
        if job is None:
            conn.execute("UPDATE workers SET heartbeat_at = ? WHERE worker_id = ?", (now, worker.worker_id))
        else:
            conn.execute(
                "UPDATE workers SET heartbeat_at = ?, last_claim_at = ?, conversation_id = ? WHERE worker_id = ?",
                (now, now, job.conversation_id, worker.worker_id),
            )


def _bundled(
    conn: sqlite3.Connection,
    control: ControlState,
    now: int,
    job: ClaimedJob | None,
    box: SecretBox | None,
    *,
    bundle: bool,
) -> ClaimResult:
    hydrated = None
    if job is not None and bundle:
        hydrated = agents.bundle_for(conn, job.message_id, job.conversation_id, job.agent_key, job.payload, box)
    return ClaimResult(control=control, now=now, job=job, bundle=hydrated)


def _claim(
    conn: sqlite3.Connection, worker: WorkerRow, conversation_id: str | None, now: int, new_lease: TokenSource
) -> ClaimedJob | None:
    taken = _take(conn, worker, conversation_id, now, new_lease)
    job = None if taken is None else taken[0]
    _record(conn, worker, now, job, settled=False)
    return job


def claim(
    conn: sqlite3.Connection, worker_id: str, conversation_id: str | None, now: int, new_lease: TokenSource
) -> ClaimedJob | None:
    """Lease the best due head, or None. Any claim, empty or not, counts as a heartbeat."""
    return _claim(conn, _claimant(conn, worker_id, now), conversation_id, now, new_lease)


def claim_with_bundle(
    conn: sqlite3.Connection,
    worker_id: str,
    conversation_id: str | None,
    now: int,
    new_lease: TokenSource,
    box: SecretBox | None,
) -> ClaimResult:
    """A claim answered with the job's hydration bundle and the worker's control state."""
    worker = _claimant(conn, worker_id, now)
    job = _claim(conn, worker, conversation_id, now, new_lease)
    return _bundled(conn, worker.control(), now, job, box, bundle=True)


def _chained(conn: sqlite3.Connection, seq: int | None, worker_id: str, now: int) -> ClaimedJob | None:
    """The job an earlier try of this complete claimed next, if its lease is still live."""
    if seq is None:
        return None
    row = conn.execute(
        "SELECT message_id, conversation_id, agent_key, payload, attempts, lease_id, lease_expires_at FROM messages"
        " WHERE seq = ? AND status = 'processing' AND claimed_by = ? AND lease_expires_at > ?",
        (seq, worker_id, now),
    ).fetchone()
    if row is None:
        return None
    message_id, conversation_id, agent_key, payload, attempts, lease_id, expires = row
    return _job(message_id, conversation_id, agent_key, payload, attempts, lease_id, expires, now)


def _nothing_next(claim_next: NextClaim | None, control: ControlState, now: int) -> ClaimResult | None:
    """The answer to a next claim that was not tried (the complete was refused, or no worker row)."""
    return None if claim_next is None else ClaimResult(control=control, now=now)


def complete(
    conn: sqlite3.Connection,
    lease: LeaseRef,
    now: int,
    new_lease: TokenSource,
    *,
    history: Sequence[HistoryMessage] | None = None,
    claim_next: NextClaim | None = None,
    box: SecretBox | None = None,
) -> tuple[CompleteResult, bool]:
    """Mark the message done, append its history turns, and claim the worker's next job.

    A replay (same lease, already done) reports the first outcome and hands back the job that
    try claimed next. ``claim_next`` is honoured only by an accepted complete or its replay, so a
    retried call never claims twice. Also says whether the complete left a message claimable
    that was not before (the conversation's next head, unless this worker took it): only then
    are idle workers worth waking.
    """
    settled = conn.execute(_DONE_SQL, (now, *fence_args(lease, now))).fetchone()
    done = (
        settled
        or conn.execute(
            "SELECT seq, conversation_id, chained_seq, NULL FROM messages"
            " WHERE message_id = ? AND lease_id = ? AND claimed_by = ? AND status = 'done'",
            (lease.message_id, lease.lease_id, lease.worker_id),
        ).fetchone()
    )
    worker = worker_row(conn, lease.worker_id)
    control = control_of(worker)
    if done is None:
        refused = refusal(conn, lease, now)
        nothing = _nothing_next(claim_next, control, now)
        return CompleteResult(ok=False, refused=refused, now=now, control=control, next=nothing), False
    seq, conversation_id, chained_seq, metadata = done
    appended = None
    if history:
        request = AppendRequest(conversation_id=conversation_id, message_id=lease.message_id, messages=list(history))
        appended = agents.append_history(conn, request, now)
    if settled is not None:
        # After the history: a notification's reply is read from it, in this same transaction.
        runtime.on_complete(conn, conversation_id, lease.message_id, metadata, now)
    freed = settled is not None and advance_head(conn, conversation_id, now)
    if worker is None:
        nothing = _nothing_next(claim_next, control, now)
        return CompleteResult(ok=True, now=now, control=control, appended=appended, next=nothing), freed
    job = None
    if claim_next is not None:
        job = _chained(conn, chained_seq, lease.worker_id, now)
        taken = None if job is not None else _take(conn, worker, claim_next.conversation_id, now, new_lease)
        if taken is not None:
            job, next_seq = taken
            conn.execute("UPDATE messages SET chained_seq = ? WHERE seq = ?", (next_seq, seq))
    _record(conn, worker, now, job, settled=settled is not None)
    result = CompleteResult(
        ok=True,
        now=now,
        control=control,
        appended=appended,
        next=None if claim_next is None else _bundled(conn, control, now, job, box, bundle=claim_next.with_bundle),
    )
    return result, freed and (job is None or job.conversation_id != conversation_id)
