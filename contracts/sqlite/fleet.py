"""Workers, the demand snapshot, operator statistics, the reconcile lock and the launch ledger."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from contracts.models import (
    OPEN_LAUNCH_STATES,
    READY_IDS_LIMIT,
    RECENT_HORIZON_MS,
    RECENT_LIMIT,
    ControlState,
    DeadLetter,
    DemandSnapshot,
    LaunchRecord,
    LaunchState,
    MachineRef,
    MessagePayload,
    QueueStats,
    RecentConversation,
    SetWorkerStatusRequest,
    WorkerRecord,
    WorkerRegistration,
    WorkerView,
    require_page,
)
from contracts.rules import exit_visible, stale_after_ms
from contracts.sqlite import snapshots
from contracts.sqlite.queue import control_of, lease_ttl_ms, refresh_heartbeat, worker_row

_STATUS_ORDER = {"active": 0, "draining": 1, "stopping": 2, "stopped": 3}
_WORKER_COLUMNS = (
    "worker_id, provider, status, status_reason, status_since, machine_ref, launch_id, capabilities, registered_at,"
    " heartbeat_at, last_claim_at, busy_since, idle_since, conversation_id, pinned_conversation_id"
)
RECONCILE_LOCK = "reconcile"


def _worker(row: tuple[Any, ...]) -> WorkerRecord:
    (
        wid,
        provider,
        status,
        reason,
        since,
        machine_ref,
        launch_id,
        caps,
        registered,
        heartbeat,
        last_claim,
        busy,
        idle,
        conv,
        pinned,
    ) = row
    return WorkerRecord(
        worker_id=wid,
        provider=provider,
        status=status,
        status_reason=reason,
        status_since=since,
        machine_ref=MachineRef.model_validate_json(machine_ref) if machine_ref else None,
        launch_id=launch_id,
        capabilities=json.loads(caps),
        registered_at=registered,
        heartbeat_at=heartbeat,
        last_claim_at=last_claim,
        busy_since=busy,
        idle_since=idle,
        conversation_id=conv,
        pinned_conversation_id=pinned,
    )


def register(conn: sqlite3.Connection, reg: WorkerRegistration, now: int) -> WorkerRecord:
    """Insert or refresh a worker. A worker already told to stop keeps its status."""
    machine_ref = reg.machine_ref.model_dump_json(by_alias=True, exclude_none=True) if reg.machine_ref else None
    caps = json.dumps(list(reg.capabilities or []))
    conn.execute(
        "INSERT INTO workers (worker_id, provider, status, status_since, machine_ref, launch_id, capabilities,"
        " registered_at, heartbeat_at, idle_since, pinned_conversation_id)"
        " VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (worker_id) DO UPDATE SET provider = excluded.provider,"
        " machine_ref = coalesce(excluded.machine_ref, machine_ref),"
        " launch_id = coalesce(excluded.launch_id, launch_id),"
        " pinned_conversation_id = coalesce(excluded.pinned_conversation_id, pinned_conversation_id),"
        " capabilities = excluded.capabilities, heartbeat_at = excluded.heartbeat_at",
        (reg.worker_id, reg.provider, now, machine_ref, reg.launch_id, caps, now, now, now, reg.conversation_id),
    )
    found = get_worker(conn, reg.worker_id)
    assert found is not None  # just written in this transaction
    return found


def get_worker(conn: sqlite3.Connection, worker_id: str) -> WorkerRecord | None:
    row = conn.execute(f"SELECT {_WORKER_COLUMNS} FROM workers WHERE worker_id = ?", (worker_id,)).fetchone()
    return None if row is None else _worker(row)


def list_workers(conn: sqlite3.Connection) -> list[WorkerRecord]:
    rows = conn.execute(f"SELECT {_WORKER_COLUMNS} FROM workers ORDER BY registered_at, worker_id").fetchall()
    return [_worker(row) for row in rows]


def control_state(conn: sqlite3.Connection, worker_id: str, now: int) -> ControlState:
    worker = worker_row(conn, worker_id)
    if worker is not None and worker.status == "active":
        refresh_heartbeat(conn, worker, now)
    return control_of(worker)


def set_status(conn: sqlite3.Connection, request: SetWorkerStatusRequest, now: int) -> bool:
    """Move a worker forward through active → draining → stopping → stopped; never backwards."""
    row = conn.execute("SELECT status FROM workers WHERE worker_id = ?", (request.worker_id,)).fetchone()
    if row is None or _STATUS_ORDER[request.status] < _STATUS_ORDER[row[0]]:
        return False
    conn.execute(
        "UPDATE workers SET status = ?, status_reason = ?,"
        " status_since = CASE WHEN status = ? THEN status_since ELSE ? END WHERE worker_id = ?",
        (request.status, request.reason, request.status, now, request.worker_id),
    )
    return True


# --------------------------------------------------------------------------- views


def _conversation_counts(conn: sqlite3.Connection, now: int) -> dict[str, Any]:
    row = conn.execute(
        """
        SELECT
          count(*) FILTER (WHERE available_at <= :now),
          count(*) FILTER (WHERE available_at > :now AND head_status = 'processing'),
          count(*) FILTER (WHERE available_at > :now AND head_status = 'queued' AND head_attempts > 0),
          count(*) FILTER (WHERE available_at > :now AND head_status = 'queued' AND head_attempts = 0),
          min(available_at) FILTER (WHERE available_at <= :now),
          min(available_at) FILTER (WHERE available_at > :now)
        FROM conversations INDEXED BY conversations_claim
        WHERE head_seq IS NOT NULL
        """,
        {"now": now},
    ).fetchone()
    ready, inflight, retrying, scheduled, oldest, upcoming = row
    return {
        "ready_conversations": ready,
        "inflight_conversations": inflight,
        "retrying_conversations": retrying,
        "scheduled_conversations": scheduled,
        "oldest_ready_age_ms": None if oldest is None else now - oldest,
        "next_ready_at": upcoming,
    }


def next_ready_at(conn: sqlite3.Connection, now: int, conversation_id: str | None = None) -> int | None:
    """When the next waiting conversation (retry, schedule, running lease), or the one named,
    becomes claimable."""
    if conversation_id is not None:
        row = conn.execute(
            "SELECT available_at FROM conversations WHERE conversation_id = ? AND head_seq IS NOT NULL"
            " AND available_at > ?",
            (conversation_id, now),
        ).fetchone()
        return None if row is None else int(row[0])
    row = conn.execute(
        "SELECT min(available_at) FROM conversations INDEXED BY conversations_claim"
        " WHERE head_seq IS NOT NULL AND available_at > ?",
        (now,),
    ).fetchone()
    return None if row[0] is None else int(row[0])


def demand(conn: sqlite3.Connection, now: int) -> DemandSnapshot:
    counts = _conversation_counts(conn, now)
    busy = dict(
        conn.execute(
            "SELECT lock_worker, conversation_id FROM conversations INDEXED BY conversations_claim"
            " WHERE head_seq IS NOT NULL AND head_status = 'processing' AND available_at > ?",
            (now,),
        ).fetchall()
    )
    uploading = snapshots.pending_workers(conn, now)
    views = [
        WorkerView(
            worker_id=w.worker_id,
            provider=w.provider,
            status=w.status,
            heartbeat_age_ms=max(0, now - w.heartbeat_at),
            busy=w.worker_id in busy,
            status_since=w.status_since,
            busy_since=w.busy_since if w.worker_id in busy else None,
            idle_since=None if w.worker_id in busy else (w.idle_since or w.registered_at),
            machine_ref=w.machine_ref,
            launch_id=w.launch_id,
            conversation_id=w.pinned_conversation_id or busy.get(w.worker_id),
            pinned=w.pinned_conversation_id is not None,
            snapshot_pending=w.worker_id in uploading,
        )
        for w in list_workers(conn)
        if exit_visible(w.status, w.status_since, now)
    ]
    ready = [
        row[0]
        for row in conn.execute(
            "SELECT conversation_id FROM conversations INDEXED BY conversations_claim"
            " WHERE head_seq IS NOT NULL AND available_at <= ?"
            " ORDER BY head_priority DESC, available_at, head_seq LIMIT ?",
            (now, READY_IDS_LIMIT),
        )
    ]
    return DemandSnapshot(
        now=now, workers=views, ready_conversation_ids=ready, recent=recent_conversations(conn, now), **counts
    )


def recent_conversations(conn: sqlite3.Connection, now: int) -> list[RecentConversation]:
    """Conversations with an arrival within the horizon, most recent first: keep-warm's evidence."""
    rows = conn.execute(
        "SELECT conversation_id, last_arrival_at, arrival_gaps, head_seq IS NOT NULL FROM conversations"
        " INDEXED BY conversations_recent WHERE last_arrival_at >= ? ORDER BY last_arrival_at DESC LIMIT ?",
        (now - RECENT_HORIZON_MS, RECENT_LIMIT),
    ).fetchall()
    return [
        RecentConversation(
            conversation_id=conversation_id,
            last_arrival_at=last,
            gaps_ms=json.loads(gaps) if gaps else [],
            active=bool(active),
        )
        for conversation_id, last, gaps, active in rows
    ]


def stats(conn: sqlite3.Connection, now: int) -> QueueStats:
    by_status = dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
    ttl = lease_ttl_ms(conn)
    # An active worker that stopped heartbeating exited without saying so: "stale", not "active".
    workers = dict(
        conn.execute(
            "SELECT CASE WHEN status = 'active' AND heartbeat_at < ? THEN 'stale' ELSE status END, count(*)"
            " FROM workers GROUP BY 1",
            (now - stale_after_ms(ttl),),
        ).fetchall()
    )
    counts = _conversation_counts(conn, now)
    counts.pop("next_ready_at")
    return QueueStats(
        lease_ttl_ms=ttl,
        queued=by_status.get("queued", 0),
        processing=by_status.get("processing", 0),
        done=by_status.get("done", 0),
        dead_letters=by_status.get("dead_letter", 0),
        workers=workers,
        **counts,
    )


def dead_letters(conn: sqlite3.Connection, limit: int) -> list[DeadLetter]:
    require_page("limit", limit)
    rows = conn.execute(
        "SELECT message_id, conversation_id, agent_key, attempts, max_attempts, last_error, finished_at, payload,"
        " external_message_id"
        " FROM messages WHERE status = 'dead_letter' ORDER BY finished_at DESC, seq DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [
        DeadLetter(
            message_id=mid,
            conversation_id=conv,
            agent_key=agent,
            attempts=attempts,
            max_attempts=max_attempts,
            last_error=error or "",
            dead_lettered_at=at or 0,
            message_text=MessagePayload.model_validate_json(payload).message_text,
            external_message_id=external,
        )
        for mid, conv, agent, attempts, max_attempts, error, at, payload, external in rows
    ]


# --------------------------------------------------------------------------- reconcile lock and ledger


def acquire_lock(conn: sqlite3.Connection, name: str, holder: str, ttl_ms: int, now: int) -> bool:
    row = conn.execute("SELECT holder, expires_at FROM locks WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] != holder and row[1] > now:
        return False
    conn.execute(
        "INSERT INTO locks (name, holder, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
        (name, holder, now + ttl_ms),
    )
    return True


def release_lock(conn: sqlite3.Connection, name: str, holder: str) -> None:
    conn.execute("DELETE FROM locks WHERE name = ? AND holder = ?", (name, holder))


_LAUNCH_COLUMNS = "launch_id, provider, requested_at, state, machine_id, updated_at, detail, conversation_id"


def _launch(row: tuple[Any, ...]) -> LaunchRecord:
    launch_id, provider, requested_at, state, machine_id, updated_at, detail, conversation_id = row
    return LaunchRecord(
        launch_id=launch_id,
        provider=provider,
        requested_at=requested_at,
        state=state,
        machine_id=machine_id,
        updated_at=updated_at,
        detail=detail,
        conversation_id=conversation_id,
    )


def ledger_record(conn: sqlite3.Connection, record: LaunchRecord) -> LaunchRecord:
    conn.execute(
        f"INSERT INTO launches ({_LAUNCH_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (launch_id) DO NOTHING",
        (
            record.launch_id,
            record.provider,
            record.requested_at,
            record.state,
            record.machine_id,
            record.updated_at or record.requested_at,
            record.detail,
            record.conversation_id,
        ),
    )
    row = conn.execute(f"SELECT {_LAUNCH_COLUMNS} FROM launches WHERE launch_id = ?", (record.launch_id,)).fetchone()
    return _launch(row)


def ledger_update(
    conn: sqlite3.Connection,
    launch_id: str,
    state: LaunchState,
    machine_id: str | None,
    detail: str | None,
    now: int,
) -> bool:
    cur = conn.execute(
        "UPDATE launches SET state = ?, machine_id = coalesce(?, machine_id), detail = coalesce(?, detail),"
        " updated_at = ? WHERE launch_id = ?",
        (state, machine_id, detail, now, launch_id),
    )
    return cur.rowcount == 1


def ledger_list(conn: sqlite3.Connection, include_closed: bool) -> list[LaunchRecord]:
    where = "" if include_closed else f" WHERE state IN ({', '.join(repr(s) for s in OPEN_LAUNCH_STATES)})"
    rows = conn.execute(f"SELECT {_LAUNCH_COLUMNS} FROM launches{where} ORDER BY requested_at, launch_id").fetchall()
    return [_launch(row) for row in rows]
