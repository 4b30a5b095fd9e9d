"""One SQLite connection with the store's settings, and its transactions.

Every write runs in ``BEGIN IMMEDIATE`` so that writers take the database's write lock up front
instead of failing half-way when they try to upgrade a read lock. When another process holds the
lock, SQLite's own busy handler waits a short slice (``BUSY_SLICE_MS``, blocking): most locks are
held for tens of microseconds, and under contention that handler's sleeps cost far less CPU than
failing at once and retrying from Python (measured in ``python -m bench store``, 8 processes).
Past the slice :class:`Busy` is raised and the async layer waits without blocking the event loop,
then tries again, for as long as the store's busy timeout allows. Statements themselves are short,
so they run inline on the event loop; no thread hop per call.

The WAL is checkpointed into the database file every ``CHECKPOINT_PAGES`` pages (SQLite's
auto-checkpoint, run by whichever commit crosses the mark), not SQLite's default 1,000. A
checkpoint copies each page changed since the last one once and syncs the file: the queue's hot
pages (heads, open-message index, the newest rows) change on every message, so a longer interval
copies each of them once for ten times as many messages, and syncs a tenth as often (measured in
``python -m bench store``: on a one-process NORMAL drain the commit's wall time fell from about
180 µs to about 130 µs, and the one-call path's rate rose by 13–21 %).
What it costs:

* the WAL grows to about 40 MiB (10,000 pages of 4 KiB) before it is reset; a checkpoint held
  off by a long reader lets it grow further, and ``JOURNAL_LIMIT_BYTES`` truncates it back after
  the next reset;
* recovery after a crash reads the whole WAL once to rebuild its index (about 110 ms for a
  117 MiB WAL on the 2-core test VM, so some 40 ms at 40 MiB);
* at ``synchronous=NORMAL`` the WAL is synced only by a checkpoint, so a power cut (not a process
  crash) can roll back up to that many pages of commits instead of 1,000; at ``FULL`` every commit
  is synced and nothing changes;
* the commit that runs a checkpoint takes longer (one in about 1,500 messages at 6.5 pages each).

A store whose ``wait_for_work`` ends without a ring (nothing happened on the queue for a whole
poll) checkpoints what it can without waiting for anyone (``checkpoint``), so a quiet queue leaves
little in the WAL.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import quote

from contracts.errors import StoreUnusable
from contracts.sqlite.schema import NotOurs, SchemaTooNew, check_ours, migrate

Synchronous = Literal["FULL", "NORMAL"]
T = TypeVar("T")
_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_NAME_MAX = 255  # bytes in one file name on every file system we run on
# How long one try may block the event loop waiting for another process's lock.
BUSY_SLICE_MS = 10
# WAL pages between auto-checkpoints (SQLite's default: 1,000), and the WAL's size after a reset.
CHECKPOINT_PAGES = 10_000
JOURNAL_LIMIT_BYTES = 64 * 1024 * 1024


class Busy(Exception):
    """Another connection holds the lock this transaction needs; nothing was changed."""


def connect(
    path: Path,
    *,
    synchronous: Synchronous = "FULL",
    open_timeout_s: float = 30.0,
    create: bool = True,
    busy_slice_ms: int = BUSY_SLICE_MS,
) -> sqlite3.Connection:
    """Open ``path`` with WAL and the chosen durability, migrating it if needed.

    ``synchronous=FULL`` (the default) fsyncs the WAL on every commit: an acknowledged enqueue
    survives power loss. ``NORMAL`` skips that fsync and is faster; it is still safe against
    process crashes, but a power cut can roll back the last commits.

    A new store is created 0600 in a 0700 folder (SQLite gives the WAL and SHM files the
    database file's mode): it holds bot tokens, so only its owner may read it. ``create=False``
    refuses a missing file instead (commands that only read never leave a store behind). A file
    that is not a SQLite database, a database another program made, or a newer release's store
    is refused before anything in it changes (:class:`StoreUnusable`); a lock held by another
    process stays a retryable ``sqlite3.OperationalError``.
    """
    if len(os.fsencode(path.name)) > _NAME_MAX:
        raise StoreUnusable(
            str(path), f"the file name is {len(os.fsencode(path.name))} bytes; the limit is {_NAME_MAX}"
        )
    if create:
        _create_file(path)
    elif not _is_file(path):
        raise StoreUnusable(
            str(path), "no store file here; check --store or FACTORY_STORE (enqueue a message to create a store)"
        )
    try:
        # mode=rw: SQLite itself never creates the file, so _create_file decides its mode.
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=rw",
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=open_timeout_s,
            # Every statement of the store is a constant string, so each is prepared once per
            # connection and reused from sqlite3's statement cache; it holds them all (default 128).
            cached_statements=512,
        )
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from exc
    try:
        check_ours(conn)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreUnusable(str(path), f"could not switch to WAL mode (got {mode}); is the file system read-only?")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_LIMIT_BYTES}")
        migrate(conn)
        conn.execute(f"PRAGMA busy_timeout = {int(busy_slice_ms)}")
    except (NotOurs, SchemaTooNew) as exc:
        conn.close()
        raise StoreUnusable(str(path), str(exc)) from None
    except sqlite3.Error as exc:
        conn.close()
        raise _unusable(path, exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _create_file(path: Path) -> None:
    """Make the store's folder (0700) and an empty file (0600) unless they exist; one line if not."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreUnusable(str(path), f"cannot create its folder: {path.parent} is a file, not a folder") from None
    except OSError as exc:
        raise StoreUnusable(str(path), f"cannot create its folder {path.parent}: {_reason(exc)}") from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing store (or another process made it a moment ago)
    except OSError as exc:
        raise StoreUnusable(str(path), f"cannot create the file: {_reason(exc)}") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as exc:  # a name too long, a folder we may not enter
        raise StoreUnusable(str(path), f"cannot look for the file: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower()


def _unusable(path: Path, exc: sqlite3.Error) -> Exception:
    """What a SQLite error at open means: a lock is retryable (returned as it is); else one line."""
    if isinstance(exc, sqlite3.OperationalError) and _is_busy(exc):
        return exc
    if getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreUnusable(str(path), f"is not a usable SQLite database ({exc}); restore it from a backup")
    return StoreUnusable(str(path), f"cannot open the SQLite file: {exc}")


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

    def checkpoint(self) -> None:
        """Copy what the WAL holds into the database file, without waiting for other connections
        (a passive checkpoint: pages a reader still needs stay for the next one)."""
        with self._lock:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

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
