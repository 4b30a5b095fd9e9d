"""An agent's workspace written from its profile, the bridge skill, the history preamble, the config entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import AgentSpec, CompatibleModel, gateway_config
from gateway.history import CLOSE, OPEN, split_history, with_history
from gateway.workspace import bridge_skill, write_workspace


def test_the_workspace_is_written_once_and_forgets_what_the_profile_dropped(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    files = {"SOUL.md": "kind", "skills/notes/SKILL.md": "---\nname: notes\n---\n"}
    assert sorted(write_workspace(ws, files)) == ["SOUL.md", "skills/notes/SKILL.md"]
    (ws / "MEMORY.md").write_text("the agent's own")  # never touched
    assert write_workspace(ws, files) == []  # unchanged files are not rewritten (the gateway watches them)
    assert write_workspace(ws, {"SOUL.md": "kinder"}) == ["SOUL.md", "skills/notes/SKILL.md"]
    assert (ws / "SOUL.md").read_text() == "kinder"
    assert not (ws / "skills" / "notes").exists()
    assert (ws / "MEMORY.md").read_text() == "the agent's own"


def test_the_workspace_refuses_paths_a_profile_may_not_set(tmp_path: Path) -> None:
    for bad in ["../outside.md", "MEMORY.md", "skills/x/other.txt", "skills/../../x/SKILL.md"]:
        with pytest.raises(ValueError, match=r"workspace file|skill name"):
            write_workspace(tmp_path / "ws", {bad: "x"})
    assert not (tmp_path / "outside.md").exists()


def test_the_bridge_skill_names_the_command_and_never_a_key() -> None:
    text = bridge_skill(["/usr/bin/python3", "-m", "factory", "bridge", "call", "--config", "/data/b/main.json"])
    assert text.startswith("---\nname: agent-bridge\n")
    assert "/usr/bin/python3 -m factory bridge call --config /data/b/main.json FUNCTION_KEY --args" in text


turns = st.lists(
    st.tuples(st.sampled_from(["user", "assistant"]), st.text(min_size=1, max_size=40).filter(lambda t: t.strip())),
    max_size=12,
)


@given(turns, st.text(max_size=40))
def test_a_history_preamble_reads_back_as_the_turns_and_the_message(history: list[tuple[str, str]], msg: str) -> None:
    text = with_history(history, msg)
    seeded, rest = split_history(text)
    assert rest == msg.strip() if history else text == msg
    assert seeded == [(role, " ".join(t.split())) for role, t in history]


def test_a_long_history_keeps_the_newest_turns_within_the_budget() -> None:
    history = [("user", f"turn {n} " + "x" * 100) for n in range(100)]
    text = with_history(history, "now", max_chars=1_000)
    assert text.startswith(OPEN) and CLOSE in text and len(text) < 1_400
    seeded, rest = split_history(text)
    assert rest == "now" and seeded[-1][1].startswith("turn 99")
    assert "earlier turn(s) left out" in text


def test_the_config_entry_carries_the_allowlist_and_the_exec_choice(tmp_path: Path) -> None:
    agents = (
        AgentSpec(id="main", skills=("notes", "agent-bridge"), host_exec=True),
        AgentSpec(id="quiet", skills=(), host_exec=False),
        AgentSpec(id="plain"),
    )
    config = gateway_config(
        port=1, state_dir=tmp_path, agents=agents, model=CompatibleModel(base_url="http://127.0.0.1:9/v1")
    )
    entries = config["agents"]["entries"]
    assert entries["main"]["skills"] == ["notes", "agent-bridge"]
    assert entries["main"]["tools"] == {"alsoAllow": ["exec"], "deny": ["process"]}
    # main's own opt-in lifts the gateway-wide deny; every other agent keeps it in its entry.
    assert "group:runtime" not in config["tools"]["deny"] and "exec" not in config["tools"]
    closed = {"deny": ["group:runtime"], "exec": {"mode": "deny"}}
    assert entries["quiet"]["skills"] == [] and entries["quiet"]["tools"] == closed
    assert "skills" not in entries["plain"] and entries["plain"]["tools"] == closed


def test_without_an_agent_opt_in_the_deny_stays_gateway_wide(tmp_path: Path) -> None:
    agents = (AgentSpec(id="main", skills=("notes",)), AgentSpec(id="quiet", host_exec=False))
    config = gateway_config(
        port=1, state_dir=tmp_path, agents=agents, model=CompatibleModel(base_url="http://127.0.0.1:9/v1")
    )
    assert config["tools"]["deny"][0] == "group:runtime" and config["tools"]["exec"] == {"mode": "deny"}
    assert "tools" not in config["agents"]["entries"]["main"]
    assert config["agents"]["entries"]["quiet"]["tools"] == {"deny": ["exec", "process"]}
