"""One SQLite connection with the store's settings, and its transaction helpers.

Every write runs in ``BEGIN IMMEDIATE`` so that writers queue on the database lock up front
(under ``busy_timeout``) instead of failing half-way with SQLITE_BUSY when they try to upgrade
a read lock. Reads that need a consistent view use a deferred transaction; in WAL mode they
never block writers.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from contracts.sqlite.schema import migrate

Synchronous = Literal["FULL", "NORMAL"]


def connect(path: Path, *, synchronous: Synchronous = "FULL", busy_timeout_ms: int = 30_000) -> sqlite3.Connection:
    """Open ``path`` with WAL, the chosen durability and a busy timeout, migrating it if needed.

    ``synchronous=FULL`` (the default) fsyncs the WAL on every commit: an acknowledged enqueue
    survives power loss. ``NORMAL`` skips that fsync and is several times faster; it is still
    safe against process crashes, but a power cut can roll back the last commits.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path,
        isolation_level=None,  # we issue BEGIN/COMMIT ourselves
        check_same_thread=False,  # the async facade hops threads; a lock serialises use
        timeout=busy_timeout_ms / 1000,
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"could not switch {path} to WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


class Engine:
    """A connection plus a lock: one transaction at a time on this connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self.conn.close()
