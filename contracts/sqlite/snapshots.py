"""Snapshot rows: prepare, finalize, fail, the newest ready one, listing and pruning.

The archives themselves are files (:mod:`contracts.sqlite.blobs`); rows name them by sha256.
Shaped after upstream agent-factory's ``dataSnapshots``: the newest row of a conversation is the
only one offered for restore, and only when it is ready (an older snapshot would restore a memory
that lacks the newest turns; history seeding is the better fallback).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from contracts.models import (
    SNAPSHOT_FORMAT,
    BootBundle,
    SnapshotFinalize,
    SnapshotPrepare,
    SnapshotPruneResult,
    SnapshotRecord,
    SnapshotRestore,
    SnapshotUpload,
)
from contracts.sqlite.agents import get_profile

# An upload that has not finished within this long is given up (its worker died mid-way).
ABANDONED_MS = 60 * 60 * 1000
_COLUMNS = (
    "snapshot_id, workspace_id, agent_key, conversation_id, worker_id, reason, status, format_version,"
    " created_at, completed_at, storage_id, sha256, size_bytes, error"
)


def _record(row: tuple[Any, ...]) -> SnapshotRecord:
    return SnapshotRecord.model_validate(dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True)))


def prepare(conn: sqlite3.Connection, request: SnapshotPrepare, now: int, new_id: Callable[[], str]) -> SnapshotUpload:
    snapshot_id = new_id()
    conn.execute(
        "INSERT INTO snapshots (snapshot_id, workspace_id, agent_key, conversation_id, worker_id, reason, status,"
        " format_version, created_at) VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?, ?)",
        (
            snapshot_id,
            request.workspace_id,
            request.agent_key,
            request.conversation_id,
            request.worker_id,
            request.reason,
            SNAPSHOT_FORMAT,
            now,
        ),
    )
    return SnapshotUpload(snapshot_id=snapshot_id, expires_at=now + ABANDONED_MS)


def finalize(conn: sqlite3.Connection, request: SnapshotFinalize, now: int) -> bool:
    """Uploading → ready, for the worker that prepared it; its worker moves from draining to stopping."""
    row = conn.execute(
        "SELECT worker_id, status, storage_id FROM snapshots WHERE snapshot_id = ?", (request.snapshot_id,)
    ).fetchone()
    if row is None or row[0] != request.worker_id:
        return False
    if row[1] != "uploading":
        # A replay of the finalize that landed reports the same outcome.
        return bool(row[1] == "ready" and row[2] == request.storage_id)
    conn.execute(
        "UPDATE snapshots SET status = 'ready', storage_id = ?, sha256 = ?, size_bytes = ?, completed_at = ?"
        " WHERE snapshot_id = ?",
        (request.storage_id, request.sha256, request.size_bytes, now, request.snapshot_id),
    )
    conn.execute(
        "UPDATE workers SET status = 'stopping', status_reason = ?, status_since = ?"
        " WHERE worker_id = ? AND status = 'draining'",
        (f"snapshot {request.snapshot_id} ready", now, request.worker_id),
    )
    return True


def fail(conn: sqlite3.Connection, worker_id: str, snapshot_id: str, error: str, now: int) -> bool:
    cur = conn.execute(
        "UPDATE snapshots SET status = 'failed', error = ?, completed_at = coalesce(completed_at, ?)"
        " WHERE snapshot_id = ? AND status IN ('uploading', 'ready')"
        " AND (status = 'ready' OR worker_id = ?)",
        (f"{error[:1000]} (reported by {worker_id})", now, snapshot_id, worker_id),
    )
    return cur.rowcount == 1


def latest(conn: sqlite3.Connection, workspace_id: str, agent_key: str, conversation_id: str) -> SnapshotRestore | None:
    row = conn.execute(
        "SELECT snapshot_id, status, storage_id, sha256, size_bytes, created_at FROM snapshots"
        " WHERE workspace_id = ? AND agent_key = ? AND conversation_id = ? AND status != 'expired'"
        " ORDER BY created_at DESC, rowid DESC LIMIT 1",
        (workspace_id, agent_key, conversation_id),
    ).fetchone()
    if row is None or row[1] != "ready":
        return None
    snapshot_id, _, storage_id, sha256, size_bytes, created_at = row
    return SnapshotRestore(
        snapshot_id=snapshot_id,
        agent_key=agent_key,
        conversation_id=conversation_id,
        storage_id=storage_id,
        sha256=sha256,
        size_bytes=size_bytes,
        created_at=created_at,
    )


def boot(conn: sqlite3.Connection, workspace_id: str, conversation_id: str) -> BootBundle | None:
    row = conn.execute("SELECT agent_key FROM conversations WHERE conversation_id = ?", (conversation_id,)).fetchone()
    if row is None:
        return None
    profile = get_profile(conn, row[0])
    if profile is None:
        return None
    return BootBundle(
        conversation_id=conversation_id,
        agent_key=row[0],
        profile=profile,
        snapshot=latest(conn, workspace_id, row[0], conversation_id),
        pinned_workers=[
            worker_id
            for (worker_id,) in conn.execute(
                "SELECT worker_id FROM workers INDEXED BY workers_pinned"
                " WHERE pinned_conversation_id = ? AND status = 'active' ORDER BY worker_id",
                (conversation_id,),
            )
        ],
    )


def list_snapshots(conn: sqlite3.Connection, conversation_id: str | None, limit: int) -> list[SnapshotRecord]:
    where, args = ("WHERE conversation_id = ?", [conversation_id]) if conversation_id is not None else ("", [])
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM snapshots {where} ORDER BY created_at DESC, rowid DESC LIMIT ?", [*args, limit]
    ).fetchall()
    return [_record(row) for row in rows]


def prune(
    conn: sqlite3.Connection, keep: int, conversation_id: str | None, now: int
) -> tuple[SnapshotPruneResult, set[str]]:
    """Expire all but the newest ``keep`` ready snapshots per conversation; returns the result and
    the archives no row refers to any more (the caller deletes those files)."""
    scope, args = ("AND conversation_id = ?", [conversation_id]) if conversation_id is not None else ("", [])
    abandoned = conn.execute(
        f"UPDATE snapshots SET status = 'failed', error = 'upload abandoned', completed_at = ?"
        f" WHERE status = 'uploading' AND created_at < ? {scope}",
        [now, now - ABANDONED_MS, *args],
    ).rowcount
    rows = conn.execute(
        f"""
        SELECT snapshot_id, storage_id FROM (
          SELECT snapshot_id, storage_id, row_number() OVER (
            PARTITION BY workspace_id, agent_key, conversation_id ORDER BY created_at DESC, rowid DESC
          ) AS rank
          FROM snapshots WHERE status = 'ready' {scope}
        ) WHERE rank > ?
        """,
        [*args, keep],
    ).fetchall()
    conn.executemany(
        "UPDATE snapshots SET status = 'expired' WHERE snapshot_id = ?", [(snapshot_id,) for snapshot_id, _ in rows]
    )
    # Failed and expired rows keep their history but let go of their archives.
    candidates = {storage_id for _, storage_id in rows if storage_id}
    candidates |= {
        r[0]
        for r in conn.execute(
            f"SELECT storage_id FROM snapshots WHERE status = 'failed' AND storage_id IS NOT NULL {scope}", args
        )
    }
    still_used = {
        r[0]
        for r in conn.execute(
            "SELECT storage_id FROM snapshots WHERE status IN ('ready', 'uploading') AND storage_id IS NOT NULL"
        )
    }
    return SnapshotPruneResult(expired=len(rows), abandoned=abandoned), candidates - still_used


def pending_workers(conn: sqlite3.Connection, now: int) -> set[str]:
    """Workers with an upload in progress (not yet abandoned): their machines must wait for it."""
    return {
        r[0]
        for r in conn.execute(
            "SELECT worker_id FROM snapshots WHERE status = 'uploading' AND created_at >= ?", (now - ABANDONED_MS,)
        )
    }
