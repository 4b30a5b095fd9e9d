"""One SQLite connection with the store's settings, and its transactions.

Every write runs in ``BEGIN IMMEDIATE`` so that writers take the database's write lock up front
instead of failing half-way when they try to upgrade a read lock. The connection's own busy
timeout is zero: when another process holds the lock, :class:`Busy` is raised at once and the
async layer waits without blocking the event loop, then tries again. Statements themselves are
short (tens of microseconds), so they run inline on the event loop; no thread hop per call.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from contracts.sqlite.schema import migrate

Synchronous = Literal["FULL", "NORMAL"]
T = TypeVar("T")
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class Busy(Exception):
    """Another connection holds the lock this transaction needs; nothing was changed."""


def connect(path: Path, *, synchronous: Synchronous = "FULL", open_timeout_s: float = 30.0) -> sqlite3.Connection:
    """Open ``path`` with WAL and the chosen durability, migrating it if needed.

    ``synchronous=FULL`` (the default) fsyncs the WAL on every commit: an acknowledged enqueue
    survives power loss. ``NORMAL`` skips that fsync and is faster; it is still safe against
    process crashes, but a power cut can roll back the last commits.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opening and migrating wait on other processes the ordinary way; afterwards we never block.
    # Every statement of the store is a constant string, so each is prepared once per connection and
    # reused from sqlite3's statement cache; the cache holds them all (the default holds 128).
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=open_timeout_s, cached_statements=512
    )
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"could not switch {path} to WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    migrate(conn)
    conn.execute("PRAGMA busy_timeout = 0")
    return conn


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code & 0xFF) in _BUSY_CODES if isinstance(code, int) else "locked" in str(exc)


class Engine:
    """A connection plus a lock, so that one transaction at a time uses it."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def write(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` in an immediate transaction; raise :class:`Busy` if the lock is taken."""
        with self._lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise Busy from exc
                raise
            try:
                result = op(self.conn)
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self._commit()
            return result

    def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op`` on one consistent snapshot (WAL readers never wait for writers)."""
        with self._lock:
            try:
                self.conn.execute("BEGIN")
                try:
                    return op(self.conn)
                finally:
                    self.conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise Busy from exc
                raise

    def _commit(self) -> None:
        try:
            self.conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            # COMMIT can only be refused for a lock while readers block a checkpoint; give up
            # the whole transaction so that the caller's retry starts clean.
            self.conn.execute("ROLLBACK")
            if _is_busy(exc):
                raise Busy from exc
            raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()
