"""The front door's commands as a user runs them: secrets, pairing, bindings, app tokens."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx

from contracts.push import PushJob, PushTemplate, Schedule
from contracts.secrets import new_key
from contracts.sqlite import SqliteStore
from tests.cli.conftest import Cli

TOKEN = "8080:a-bot-token-nobody-may-read"


def test_the_cli_never_shows_a_value(cli: Cli) -> None:
    key = cli("secrets", "keygen").stdout.strip()
    cli.env["FACTORY_SECRETS_KEY"] = key
    stored = cli("secrets", "set", "telegram.botToken.default", input=TOKEN + "\n")
    assert stored.code == 0, stored.stderr
    status = cli("secrets", "status", "--json")
    rows = status.json()
    assert rows[0]["secretRef"] == "telegram.botToken.default" and rows[0]["version"] == 1
    assert TOKEN not in status.stdout + status.stderr + stored.stdout + stored.stderr
    cli.env["FACTORY_SECRETS_KEY"] = new_key()
    cli.env["FACTORY_SECRETS_PREVIOUS_KEYS"] = key
    rotated = cli("secrets", "rotate-key", "--json")
    assert rotated.code == 0 and rotated.json()["resealed"] == 1
    del cli.env["FACTORY_SECRETS_PREVIOUS_KEYS"]
    cli.env["FACTORY_SECRETS_KEY"] = "not-a-key"
    bad = cli("secrets", "status")
    assert bad.code != 0 and bad.stderr.count("\n") == 1 and "FACTORY_SECRETS_KEY" in bad.stderr


def test_pairing_codes_and_app_tokens_from_the_command_line(cli: Cli) -> None:
    cli.env["FACTORY_SECRETS_KEY"] = new_key()
    created = cli("pairing", "create", "--agent", "default", "--ttl", "120", "--json")
    assert created.code == 0, created.stderr
    code = created.json()["code"]
    status = cli("pairing", "status", code, "--json")
    assert status.json()["status"] == "pending" and status.json()["agentKey"] == "default"
    unknown = cli("pairing", "create", "--agent", "nobody")
    assert unknown.code != 0 and "nobody" in unknown.stderr and unknown.stderr.count("\n") == 1
    assert cli("bindings", "list").stdout.strip() == "no bindings"
    token = cli("app-token", "create", "shop", "--json").json()
    listed = cli("app-token", "list", "--json")
    assert [t["name"] for t in listed.json()] == ["shop"] and token["token"] not in listed.stdout
    assert cli("app-token", "revoke", token["tokenId"]).code == 0


def _due_push_job(db: Path) -> None:
    async def seed() -> None:
        store = SqliteStore(db)
        try:
            await store.push_template_put(PushTemplate(template_id="t", agent_key="default", text="good morning"))
            schedule = Schedule(kind="daily", at="09:00")
            due = await store.now_ms() - 1
            await store.push_job_put(
                PushJob(job_id="j", template_id="t", conversation_id="c", schedule=schedule, next_run_at=due)
            )
        finally:
            await store.aclose()

    anyio.run(seed)


def test_serve_answers_health_dispatches_pushes_and_stops_gracefully_on_sigterm(cli: Cli) -> None:
    cli.env["FACTORY_SECRETS_KEY"] = new_key()
    cli.env["FACTORY_SERVE_PUSH_DISPATCH_S"] = "0.5"
    _due_push_job(cli.cwd / ".factory" / "factory.db")
    command = [sys.executable, "-m", "factory", "serve", "--port", "0"]
    with subprocess.Popen(command, cwd=cli.cwd, env=cli.env, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        try:
            url = None
            deadline = time.monotonic() + 60
            while url is None and time.monotonic() < deadline:
                found = re.search(r"url=(http://\S+)", proc.stderr.readline())
                url = found.group(1) if found else None
            assert url is not None, "factory serve never said where it listens"
            health = httpx.get(f"{url}/healthz", timeout=10)
            assert health.status_code == 200 and health.json()["ok"] is True
            deadline = time.monotonic() + 30  # the dispatcher inside serve enqueues the due slot
            while cli("queue", "stats", "--json").json()["queued"] != 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert [d["status"] for d in cli("push", "job", "dispatches", "j", "--json").json()] == ["enqueued"]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            assert "stopped" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
