"""The operator's side of memory: agent workspaces, a machine's prepare step, snapshot retention."""

from __future__ import annotations

import json
import sqlite3

import anyio

from contracts.models import AgentProfile
from contracts.sqlite import SqliteStore
from gateway.snapshots import AGENT_DB
from tests.cli.conftest import Cli
from worker.memory import AgentMemory

STORE = ".factory/factory.db"


def _profile(cli: Cli, agent: str) -> AgentProfile | None:
    async def read() -> AgentProfile | None:
        store = SqliteStore(cli.cwd / STORE)
        try:
            return await store.get_agent_profile(agent)
        finally:
            await store.aclose()

    return anyio.run(read)


def test_agent_set_reads_a_workspace_folder_and_a_skill_allowlist(cli: Cli) -> None:
    ws = cli.cwd / "writer"
    (ws / "skills" / "notes").mkdir(parents=True)
    (ws / "SOUL.md").write_text("Be brief. MARK-SOUL")
    (ws / "skills" / "notes" / "SKILL.md").write_text("---\nname: notes\n---\n")
    (ws / "MEMORY.md").write_text("not a profile file: left out")
    result = cli(
        "agent", "set", "writer", "--workspace", str(ws), "--skill", "notes",
        "--bridge-base-url", "https://crm.example.com", "--bridge-allow-host", "crm.example.com",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "2 workspace file(s); skills: notes; bridge" in result.stdout
    profile = _profile(cli, "writer")
    assert profile is not None
    assert set(profile.workspace_files) == {"SOUL.md", "skills/notes/SKILL.md"}
    assert profile.visible_skills() == ["notes", "agent-bridge"]
    assert profile.bridge_config is not None and profile.bridge_config.allowed_hosts == ["crm.example.com"]


def test_agent_set_names_the_bad_option_in_one_line(cli: Cli) -> None:
    for args, field in [
        (["--file", "SOUL.md"], "--file"),
        (["--file", "../escape.md=" + str(cli.cwd / "x")], "--file"),
        (["--file", "MEMORY.md=/dev/null"], "workspaceFiles"),
        (["--skill", "Not A Name"], "skills"),
        (["--skill", "a", "--no-skills"], "--no-skills"),
    ]:
        result = cli("agent", "set", "bad", *args)
        lines = result.stderr.strip().splitlines()
        assert result.code == 2 and len(lines) == 1 and field in lines[0], (args, result.stderr)
    assert _profile(cli, "bad") is None  # nothing stored


def test_prepare_restores_the_newest_snapshot_and_writes_the_workspace(cli: Cli) -> None:
    old_machine = cli.cwd / "old"
    db = old_machine / "agents" / "main" / "agent" / AGENT_DB
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
    soul = cli.cwd / "soul.md"
    soul.write_text("MARK-SOUL")
    assert cli("agent", "set", "memo", "--file", f"SOUL.md={soul}", "--skill", "notes").code == 0
    assert cli("enqueue", "hi", "--conversation", "c1", "--agent", "memo").code == 0

    async def snapshot() -> None:
        store = SqliteStore(cli.cwd / STORE)
        try:
            taken = await AgentMemory(store, old_machine, "w-old").snapshot("memo", "main", "c1", "drain")
            assert taken.status == "ready"
        finally:
            await store.aclose()

    anyio.run(snapshot)
    new_machine = cli.cwd / "new"
    result = cli("worker", "prepare", "--conversation", "c1", "--state-dir", str(new_machine))
    assert result.code == 0, result.stderr
    assert "prepared agent main for c1: restore restored" in result.stdout
    assert (new_machine / "agents" / "main" / "agent" / AGENT_DB).exists()
    assert (new_machine / "workspaces" / "main" / "SOUL.md").read_text() == "MARK-SOUL"
    assert json.loads((new_machine / "factory-agents.json").read_text()) == [{"id": "main", "skills": ["notes"]}]

    listed = cli("snapshots", "list", "--json")
    assert listed.code == 0 and [r["status"] for r in listed.json()] == ["ready"]
    assert "c1" in cli("snapshots", "list").stdout
    pruned = cli("snapshots", "prune", "--keep", "0", "--conversation", "c1", "--json")
    assert pruned.code == 0 and pruned.json()["expired"] == 1
    again = cli("worker", "prepare", "--conversation", "c1", "--state-dir", str(cli.cwd / "newer"))
    assert "restore none" in again.stdout


def test_prepare_without_a_pin_writes_only_the_named_agents_workspaces(cli: Cli) -> None:
    result = cli("worker", "prepare", "--state-dir", str(cli.cwd / "s"))
    assert result.code == 0 and "nothing to prepare" in result.stdout
    soul = cli.cwd / "soul.md"
    soul.write_text("MARK-SHARED")
    assert cli("agent", "set", "shared", "--openclaw-agent", "alpha", "--file", f"SOUL.md={soul}").code == 0
    shared = cli("worker", "prepare", "--agent", "shared", "--state-dir", str(cli.cwd / "s"))
    assert shared.code == 0 and "prepared the workspace of agent alpha" in shared.stdout
    assert (cli.cwd / "s" / "workspaces" / "alpha" / "SOUL.md").read_text() == "MARK-SHARED"
    assert json.loads((cli.cwd / "s" / "factory-agents.json").read_text()) == [{"id": "alpha"}]
    unknown = cli("worker", "prepare", "--agent", "nobody", "--state-dir", str(cli.cwd / "s"))
    assert unknown.code == 2 and "--agent" in unknown.stderr
