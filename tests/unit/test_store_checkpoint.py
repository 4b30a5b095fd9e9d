"""The embedded store checkpoints rarely while busy and fully when idle (contracts/sqlite/engine.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from contracts.models import EnqueueRequest, MessagePayload
from contracts.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


async def test_an_idle_store_moves_the_wal_into_the_database_file(tmp_path: Path) -> None:
    db = tmp_path / "idle.db"
    store = SqliteStore(db, synchronous="NORMAL", doorbell=False)
    try:
        for i in range(20):
            await store.enqueue(
                EnqueueRequest(
                    conversation_id=f"conv-{i}",
                    agent_key="default",
                    payload=MessagePayload(provider="app", provider_user_id="u", message_text=f"m{i}"),
                )
            )
        before = db.stat().st_size  # the schema and the messages are still only in the WAL
        await store.wait_for_work(0.01)
        after = db.stat().st_size
        assert after > before
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        assert reader.execute("SELECT count(*) FROM messages").fetchone()[0] == 20
        reader.close()
    finally:
        await store.aclose()
