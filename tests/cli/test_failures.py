"""What an operator sees when something is missing or down: one line, naming it, non-zero."""

from __future__ import annotations

from contracts.convex.standin import StandIn
from tests.cli.conftest import Cli


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_a_store_nobody_listens_on_is_one_line_naming_it_and_the_cause(cli: Cli) -> None:
    result = cli("queue", "stats", "--store", "http://127.0.0.1:9")
    assert result.code != 0
    line = _one_line(result.stderr)
    assert "http://127.0.0.1:9" in line and "connection refused" in line


def test_a_convex_function_error_is_one_line_naming_the_function(cli: Cli, convex_standin: StandIn) -> None:
    convex_standin.reset(env={"FACTORY_AUTH": "open"})
    cli.env["FACTORY_CONVEX_NAMESPACE"] = "noSuchModule"
    result = cli("queue", "stats", "--store", convex_standin.url)
    assert result.code != 0
    line = _one_line(result.stderr)
    assert "noSuchModule:" in line and "function" in line


def test_the_cli_works_against_convex(cli: Cli, convex_standin: StandIn) -> None:
    convex_standin.reset(env={"FACTORY_AUTH": "open"})
    cli.env["FACTORY_STORE"] = convex_standin.url
    assert cli("enqueue", "hello", "--conversation", "telegram:1").code == 0
    assert cli("queue", "stats", "--json").json()["readyConversations"] == 1


def test_a_worker_whose_gateway_is_down_fails_the_message_as_retryable(cli: Cli) -> None:
    assert cli("enqueue", "hello", "--conversation", "c1").code == 0
    cli.env.update(OPENCLAW_GATEWAY_URL="http://127.0.0.1:9", OPENCLAW_GATEWAY_TOKEN="not-a-secret")
    result = cli("worker", "run", "--once")
    assert result.code != 0
    line = _one_line(result.stderr)
    assert "queued for retry" in line and "127.0.0.1:9" in line
    stats = cli("queue", "stats", "--json").json()
    assert (stats["queued"], stats["deadLetters"]) == (1, 0)
    # Waiting out its backoff, or already due again if this machine was slow to ask.
    assert stats["retryingConversations"] + stats["readyConversations"] == 1


def test_a_worker_without_a_gateway_token_names_the_setting(cli: Cli) -> None:
    result = cli("worker", "run", "--once")
    assert result.code != 0
    assert "OPENCLAW_GATEWAY_TOKEN" in _one_line(result.stderr)


def test_reconcile_on_fly_without_a_token_names_the_setting(cli: Cli) -> None:
    result = cli("reconcile", "--provider", "fly")
    assert result.code != 0
    assert "FLY_API_TOKEN" in _one_line(result.stderr)


def test_reconcile_on_digitalocean_without_a_token_names_the_setting(cli: Cli) -> None:
    result = cli("reconcile", "--provider", "digitalocean")
    assert result.code != 0
    assert "DIGITALOCEAN_TOKEN" in _one_line(result.stderr)


def test_a_bad_setting_is_one_line(cli: Cli) -> None:
    cli.env["FACTORY_SCALE_MAX"] = "lots"
    result = cli("reconcile", "--dry-run")
    assert result.code != 0
    assert "FACTORY_SCALE_MAX" in _one_line(result.stderr)
