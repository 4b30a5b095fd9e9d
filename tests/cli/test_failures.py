"""What an operator sees when something is missing or down: one line, naming it, non-zero."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from contracts.convex.standin import StandIn
from tests.cli.conftest import Cli
from tests.fakes import FakeFlyApi
from tests.gateway_fixture import OpenClawGateway


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


def test_a_worker_whose_gateway_is_down_waits_and_never_touches_the_message(cli: Cli) -> None:
    assert cli("enqueue", "hello", "--conversation", "c1").code == 0
    cli.env.update(OPENCLAW_GATEWAY_URL="http://127.0.0.1:9", OPENCLAW_GATEWAY_TOKEN="not-a-secret")
    result = cli("worker", "run", "--once", "--max-outage", "1")
    assert result.code == 1
    line = _one_line(result.stderr)
    assert "gateway stayed unavailable for 1 s" in line and "127.0.0.1:9" in line
    stats = cli("queue", "stats", "--json").json()
    assert (stats["queued"], stats["readyConversations"], stats["deadLetters"]) == (1, 1, 0)
    assert cli("queue", "dead-letters", "--json").json() == []


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "ftp://127.0.0.1:18789"])
def test_a_gateway_url_that_cannot_work_is_refused_before_anything_is_claimed(cli: Cli, url: str) -> None:
    assert cli("enqueue", "hello", "--conversation", "c1").code == 0
    cli.env.update(OPENCLAW_GATEWAY_URL=url, OPENCLAW_GATEWAY_TOKEN="not-a-secret")
    result = cli("worker", "run", "--once")
    assert result.code == 2
    assert "OPENCLAW_GATEWAY_URL" in _one_line(result.stderr)
    assert cli("queue", "stats", "--json").json()["readyConversations"] == 1


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


def test_a_watch_retries_a_refused_create_in_seconds_not_an_interval_later(cli: Cli) -> None:
    """``reconcile --watch 120`` against Fly refusing the first create: the conversation waits for
    its machine, so the next tick comes a couple of seconds later, not two minutes."""
    assert cli("enqueue", "hello", "--conversation", "c1").code == 0
    with FakeFlyApi(token="fly-test-token") as fly:
        fly.fail_next("create", 422, body={"error": "no capacity in this region"})
        env = {
            **cli.env,
            "FLY_API_TOKEN": "fly-test-token",
            "FLY_APP": fly.app,
            "FLY_IMAGE": "registry.fly.io/factory-worker:1",
            "FLY_API_BASE_URL": fly.url,
            "FACTORY_WORKER_STORE": "https://happy-animal-123.convex.cloud",
            "FACTORY_SCALE_POOL_SIZE": "0",  # the creates to count, not a warm pool's prefill
        }
        log = cli.cwd / "watch.log"
        with open(log, "ab") as out:
            watch = subprocess.Popen(
                [sys.executable, "-m", "factory", "reconcile", "--provider", "fly", "--watch", "120"],
                env=env,
                cwd=cli.cwd,
                stdout=out,
                stderr=out,
            )
        try:
            deadline = time.monotonic() + 60
            while fly.count("create") < 1:
                assert time.monotonic() < deadline and watch.poll() is None, log.read_text()
                time.sleep(0.1)
            refused_at = time.monotonic()
            while not fly.live():
                assert time.monotonic() - refused_at < 30 and watch.poll() is None, log.read_text()
                time.sleep(0.1)
            assert fly.count("create") == 2
        finally:
            watch.terminate()
            watch.wait(timeout=60)
    assert "no capacity in this region" in log.read_text()


def test_a_bad_setting_is_one_line(cli: Cli) -> None:
    cli.env["FACTORY_SCALE_MAX"] = "lots"
    result = cli("reconcile", "--dry-run")
    assert result.code != 0
    assert "FACTORY_SCALE_MAX" in _one_line(result.stderr)


def test_reconcile_refuses_to_launch_local_workers_without_a_gateway_token(cli: Cli) -> None:
    assert cli("enqueue", "hello", "--conversation", "c1").code == 0
    result = cli("reconcile", "--provider", "local")
    assert result.code == 2
    assert "OPENCLAW_GATEWAY_TOKEN" in _one_line(result.stderr)
    assert not list((cli.cwd / ".factory" / "local").glob("*.json"))  # nothing was launched


@pytest.mark.gateway
def test_a_gateway_token_the_gateway_refuses_is_refused_before_anything_runs(
    cli: Cli, openclaw_gateway: OpenClawGateway
) -> None:
    assert cli("enqueue", "hello", "--conversation", "c1").code == 0
    cli.env.update(OPENCLAW_GATEWAY_URL=openclaw_gateway.url, OPENCLAW_GATEWAY_TOKEN="not-the-token")
    worker = cli("worker", "run", "--once")
    assert worker.code == 2
    line = _one_line(worker.stderr)
    assert "OPENCLAW_GATEWAY_TOKEN" in line and "AUTH_TOKEN_MISMATCH" in line and "not-the-token" not in line
    reconcile = cli("reconcile", "--provider", "local")
    assert reconcile.code == 2 and "OPENCLAW_GATEWAY_TOKEN" in _one_line(reconcile.stderr)
    assert not list((cli.cwd / ".factory" / "local").glob("*.json"))
    stats = cli("queue", "stats", "--json").json()
    assert (stats["readyConversations"], stats["processing"], stats["deadLetters"]) == (1, 0, 0)
