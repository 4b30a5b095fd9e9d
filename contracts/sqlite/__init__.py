"""The embedded SQLite store: one file, no set-up, the reference semantics."""

from contracts.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
