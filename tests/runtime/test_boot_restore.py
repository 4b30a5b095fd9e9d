"""A runtime that starts its own gateway first restores each agent's newest snapshot, through the
workers' memory settings: the same size limit holds there as on every other restore."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import anyio
import pytest

from contracts.models import AgentProfile
from contracts.runtime import RuntimeAgent
from contracts.sqlite import SqliteStore
from factory.cmd_runtime import _restored
from factory.settings import WorkerSettings
from gateway.snapshots import AGENT_DB
from tests.worker.harness import message
from worker.memory import AgentMemory

AGENT = RuntimeAgent(agent_id="a1", account_id="acct", name="Jarvis", slug="jarvis")


async def _store_with_a_snapshot(root: Path) -> SqliteStore:
    """A 2 MiB agent state snapshotted on an old machine for the agent's session."""
    store = SqliteStore(root / "factory.db")
    await store.upsert_agent_profile(AgentProfile(agent_key=AGENT.agent_key, workspace_files={"SOUL.md": "MARK-SOUL"}))
    await store.enqueue(message(AGENT.session_key, "hello", agent_key=AGENT.agent_key))
    old = root / "old"
    state = old / "agents" / "main" / "agent"
    state.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(state / AGENT_DB)) as db, db:
        db.execute("CREATE TABLE memory (body BLOB)")
        db.execute("INSERT INTO memory VALUES (zeroblob(2 * 1024 * 1024))")
    taken = await AgentMemory(store, old, "w-old").snapshot(AGENT.agent_key, "main", AGENT.session_key, "drain")
    assert taken.status == "ready"
    return store


@pytest.mark.parametrize(("max_mb", "restored"), [(512, True), (1, False)])
def test_the_boot_restore_honours_the_snapshot_size_limit(tmp_path: Path, max_mb: int, restored: bool) -> None:
    async def run() -> None:
        store = await _store_with_a_snapshot(tmp_path)
        try:
            new = tmp_path / "new"
            workers = WorkerSettings.model_validate({"snapshot_max_mb": max_mb})
            spec = await _restored(new, AGENT, store, workers)
            assert spec is not None and spec.id == "main"
            assert (new / "agents" / "main" / "agent" / AGENT_DB).exists() == restored
            # Restored or refused, the profile's workspace is written: the agent still starts.
            assert (new / "workspaces" / "main" / "SOUL.md").read_text() == "MARK-SOUL"
        finally:
            await store.aclose()

    anyio.run(run)
