"""The acceptance lines of the queue CLI, run in an empty directory (the first two as real processes)."""

from __future__ import annotations

from contracts.secrets import new_key
from tests.cli.conftest import Cli


def test_enqueue_then_stats_shows_a_ready_conversation(cli_process: Cli) -> None:
    cli = cli_process
    assert cli("enqueue", "hello", "--conversation", "telegram:1").code == 0
    stats = cli("queue", "stats", "--json")
    assert stats.code == 0, stats.stderr
    body = stats.json()
    for key in (
        "queued",
        "processing",
        "done",
        "deadLetters",
        "readyConversations",
        "inflightConversations",
        "retryingConversations",
    ):
        assert key in body
    assert body["readyConversations"] == 1 and body["queued"] == 1
    assert (cli.cwd / ".factory" / "factory.db").exists()


def test_the_same_external_id_yields_one_message(cli: Cli) -> None:
    first = cli("enqueue", "hello", "--conversation", "telegram:1", "--external-id", "42", "--json")
    second = cli("enqueue", "hello", "--conversation", "telegram:1", "--external-id", "42", "--json")
    assert first.json() == second.json()
    assert cli("queue", "stats", "--json").json()["queued"] == 1


def test_an_empty_conversation_is_one_line_naming_the_field(cli_process: Cli) -> None:
    cli = cli_process
    result = cli("enqueue", "hello", "--conversation", "")
    assert result.code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "conversationId" in lines[0] and "--conversation" in lines[0]
    assert "Traceback" not in result.stderr
    assert not (cli.cwd / ".factory" / "factory.db").exists() or cli("queue", "stats", "--json").json()["queued"] == 0


def test_bad_priority_and_unknown_agent_are_one_line_each(cli: Cli) -> None:
    priority = cli("enqueue", "x", "--conversation", "c", "--priority", "101")
    assert priority.code != 0 and "priority" in priority.stderr and len(priority.stderr.strip().splitlines()) == 1
    agent = cli("enqueue", "x", "--conversation", "c", "--agent", "ghost")
    assert agent.code != 0 and "ghost" in agent.stderr and len(agent.stderr.strip().splitlines()) == 1


def test_store_option_and_environment(cli: Cli) -> None:
    assert cli("enqueue", "x", "--conversation", "c", "--store", "other.db").code == 0
    assert (cli.cwd / "other.db").exists()
    cli.env["FACTORY_STORE"] = str(cli.cwd / "env.db")
    assert cli("enqueue", "x", "--conversation", "c").code == 0
    assert (cli.cwd / "env.db").exists()


def test_dead_letters_redrive_and_release(cli: Cli) -> None:
    assert cli("enqueue", "x", "--conversation", "c").code == 0  # the store exists
    assert cli("queue", "dead-letters", "--json").json() == []
    assert cli("queue", "release-expired", "--json").json() == {"released": 0, "deadLettered": 0}
    missing = cli("queue", "redrive", "nope")
    assert missing.code != 0 and "not a dead letter" in missing.stderr
    assert cli("queue", "redrive", "--all", "--json").json() == {"redriven": []}
    both = cli("queue", "redrive")
    assert both.code != 0 and "--all" in both.stderr


def test_conversation_show(cli: Cli) -> None:
    cli("enqueue", "hi there", "--conversation", "c-9")
    shown = cli("conversation", "show", "c-9", "--json")
    assert shown.code == 0 and shown.json()["queued"] == 1
    missing = cli("conversation", "show", "c-0")
    assert missing.code != 0 and "c-0" in missing.stderr


def test_agent_profile_and_secret_from_stdin(cli: Cli) -> None:
    assert cli("agent", "set", "helper", "--openclaw-agent", "alpha").code == 0
    assert cli("enqueue", "x", "--conversation", "h", "--agent", "helper").code == 0
    keyless = cli("agent", "secret", "telegram.botToken.helper", input="123:abc\n")
    assert keyless.code != 0 and "FACTORY_SECRETS_KEY" in keyless.stderr and "secrets keygen" in keyless.stderr
    cli.env["FACTORY_SECRETS_KEY"] = new_key()
    stored = cli("agent", "secret", "telegram.botToken.helper", input="123:abc\n")
    assert stored.code == 0 and "123:abc" not in stored.stdout + stored.stderr
    assert cli("agent", "set", "helper", "--disabled").code == 0
    refused = cli("enqueue", "x", "--conversation", "h2", "--agent", "helper")
    assert refused.code != 0 and "disabled" in refused.stderr
