"""Issue 10's reproductions, one by one: each bad input is one line and the right exit code, and
nothing already stored is lost, changed or created.

In-process (``tests.cli.inprocess``) where the command allows it; as a real process where what is
tested happens before Python runs our code (bytes that are not UTF-8 in argv).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from contracts.convex.standin import StandIn
from tests.cli.conftest import Result
from tests.cli.inprocess import invoke, seed_store
from tests.gateway_fixture import OpenClawGateway

pytestmark = pytest.mark.timeout(120)
TEMPLATE = "DIGITALOCEAN_CLOUD_INIT_TEMPLATE"


def one_line(result: Result, code: int, *words: str) -> str:
    """The single stderr line of a failure with ``code``, which names every one of ``words``."""
    assert result.code == code, (result.code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def seeded(tmp_path: Path) -> Path:
    """A folder holding the default store, with history and a dead letter full of escapes."""
    anyio.run(seed_store, tmp_path / ".factory" / "factory.db")
    return tmp_path


def dump(path: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


# ------------------------------------------------------------------------------ output is inert


def test_markup_in_ids_is_stored_once_and_printed_literally(tmp_path: Path) -> None:
    for conversation in ("[/x]", "[red]evil", ":smile:"):
        queued = invoke(["enqueue", "hi", "-c", conversation], cwd=tmp_path)
        assert queued.code == 0 and queued.stdout.strip().endswith(f" in {conversation}"), queued
        shown = invoke(["conversation", "show", conversation], cwd=tmp_path)
        assert shown.code == 0 and shown.stdout.startswith(f"{conversation} agent=default queued=1"), shown
    assert invoke(["agent", "set", "[b]x"], cwd=tmp_path).stdout == "agent [b]x enabled\n"
    assert '"queued": 3' in invoke(["queue", "stats", "--json"], cwd=tmp_path).stdout


def test_stored_terminal_escapes_are_shown_not_obeyed(seeded: Path) -> None:
    history = invoke(["conversation", "show", "seed-1"], cwd=seeded)
    dead = invoke(["queue", "dead-letters"], cwd=seeded)

    for result in (history, dead):
        assert result.code == 0, result
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout and "\u202e" not in result.stdout
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m[red]x[/] :smile: \\u202eevil" in history.stdout
    assert "\\x1b" in dead.stdout


# ------------------------------------------------------------------------------ one validation layer


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["enqueue", "hi", "-c", "c1", "--delay", "inf"], {}, ["--delay"]),
        (["enqueue", "hi", "-c", "c1", "--delay", "nan"], {}, ["--delay"]),
        (["enqueue", "hi", "-c", "c1", "--delay", "1e300"], {}, ["--delay"]),
        (["queue", "dead-letters", "--limit", "99999999999999999999"], {}, ["--limit"]),
        (["queue", "stats"], {"FACTORY_LEASE_TTL_MS": "inf"}, ["FACTORY_LEASE_TTL_MS"]),
        (["queue", "stats"], {"FACTORY_STORE_TIMEOUT_S": "inf"}, ["FACTORY_STORE_TIMEOUT_S"]),
        (["enqueue", "  ", "-c", "c1"], {}, ["messageText", "TEXT", "empty"]),
        (["enqueue", "hi", "-c", "c1", "--external-id", ""], {}, ["externalMessageId", "--external-id"]),
        (["enqueue", "hi", "-c", "c" * 131_072], {}, ["conversationId", "--conversation", "256"]),
        (["enqueue", "hi", "-c", "c1", "--agent", "a\nb"], {}, ["agentKey", "control characters"]),
        (["queue", "stats", "--store", "ftp://x/y"], {}, ["FACTORY_STORE", "ftp://"]),
        (["queue", "stats", "--store", "https:/x.convex.cloud"], {}, ["FACTORY_STORE", "https:/x.convex.cloud"]),
        (["queue", "stats", "--store", "http://x.convex.cloud"], {"CONVEX_AUTH_TOKEN": "t"}, ["plain http"]),
        (["worker", "run", "--once"], {"TELEGRAM_API_BASE": "ftp://x"}, ["TELEGRAM_API_BASE"]),
        (["worker", "run", "--once"], {"TELEGRAM_API_BASE": "http://api.telegram.org"}, ["plain http"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(
    tmp_path: Path, args: list[str], env: dict[str, str], words: list[str]
) -> None:
    result = invoke(args, cwd=tmp_path, env={"OPENCLAW_GATEWAY_TOKEN": "t", **env})

    line = one_line(result, 2, *words)
    assert len(line) < 400  # a 131 KB id is named, not echoed
    assert files(tmp_path) == []


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"FLY_APP": "My_App"}, ["FLY_APP"]),
        ({"FLY_APP": "my-app", "FLY_MEMORY_MB": "300"}, ["FLY_MEMORY_MB", "256"]),
        ({"FLY_APP": "my-app", "FLY_API_BASE_URL": "http://api.example.com"}, ["FLY_API_BASE_URL", "plain http"]),
        (
            {"FLY_APP": "my-app", "FACTORY_WORKER_STORE": "http://convex.example.com", "CONVEX_AUTH_TOKEN": "t"},
            ["FACTORY_WORKER_STORE", "plain http"],
        ),
    ],
)
def test_fly_settings_are_named(tmp_path: Path, env: dict[str, str], words: list[str]) -> None:
    env = {"FLY_API_TOKEN": "t", "FLY_IMAGE": "registry.fly.io/app:1", **env}
    one_line(invoke(["reconcile", "--provider", "fly"], cwd=tmp_path, env=env), 2, *words)


@pytest.mark.parametrize(
    ("env", "code", "words"),
    [
        ({"DIGITALOCEAN_REGION": ""}, 2, ["DIGITALOCEAN_REGION"]),
        ({"DIGITALOCEAN_SSH_KEY_IDS": "abc"}, 2, ["DIGITALOCEAN_SSH_KEY_IDS", "'abc'"]),
        (
            {"DIGITALOCEAN_CLOUD_INIT_TEMPLATE": "garbage.yaml"},
            1,
            ["DIGITALOCEAN_CLOUD_INIT_TEMPLATE", "#cloud-config"],
        ),
        ({"DIGITALOCEAN_CLOUD_INIT_TEMPLATE": "binary.yaml"}, 1, ["DIGITALOCEAN_CLOUD_INIT_TEMPLATE", "UTF-8"]),
    ],
)
def test_digitalocean_settings_are_named(tmp_path: Path, env: dict[str, str], code: int, words: list[str]) -> None:
    (tmp_path / "garbage.yaml").write_text("{{ nope }} garbage: [")
    (tmp_path / "binary.yaml").write_bytes(b"#cloud-config\n\xff\xfe\x00")
    env = {"DIGITALOCEAN_TOKEN": "t", "DIGITALOCEAN_WORKER_IMAGE": "ghcr.io/acme/worker:1", **env}
    one_line(invoke(["reconcile", "--provider", "digitalocean"], cwd=tmp_path, env=env), code, *words)


def test_arguments_that_are_not_utf8_are_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "OPENCLAW_"))}
    for args in ([b"enqueue", b"hi", b"-c", b"c1", b"--agent", b"\xff"], [b"conversation", b"show", b"\xff"]):
        proc = subprocess.run(
            [sys.executable.encode(), b"-m", b"factory", *args], cwd=tmp_path, env=env, capture_output=True, timeout=60
        )
        result = Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
        one_line(result, 2, "not UTF-8", "\\xff")
    assert files(tmp_path) == []


def test_unknown_redrive_fails_for_scripts_too(seeded: Path) -> None:
    before = dump(seeded / ".factory" / "factory.db")

    result = invoke(["queue", "redrive", "msg_nope", "--json"], cwd=seeded)

    one_line(result, 2, "msg_nope", "not a dead letter")
    assert result.stdout == ""
    assert dump(seeded / ".factory" / "factory.db") == before


# ------------------------------------------------------------------------------ stores


@pytest.mark.parametrize("command", [["queue", "stats"], ["queue", "dead-letters"], ["conversation", "show", "c1"]])
def test_read_only_commands_never_create_a_store(tmp_path: Path, command: list[str]) -> None:
    one_line(invoke(command, cwd=tmp_path), 1, ".factory/factory.db", "no store file")
    one_line(invoke([*command, "--store", "new/x.db"], cwd=tmp_path), 1, "new/x.db")
    one_line(invoke(["reconcile", "--provider", "local", "--dry-run"], cwd=tmp_path), 1, "no store file")
    assert files(tmp_path) == []


def test_store_paths_that_cannot_be_created_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "regular").write_text("a file")
    cases = {
        "regular/x.db": "is a file, not a folder",
        "/proc/1/no-such-folder/x.db": "cannot create",  # where even root cannot make a folder
        "x" * 300 + ".db": "the limit is 255",
    }
    for store, words in cases.items():
        one_line(invoke(["enqueue", "hi", "-c", "c1", "--store", store], cwd=tmp_path), 1, words)
    assert files(tmp_path) == ["regular"]


def test_a_foreign_or_broken_or_newer_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    newer = tmp_path / "newer.db"
    anyio.run(seed_store, newer)
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = {p: p.read_bytes() for p in (foreign, garbage, newer)}

    one_line(invoke(["enqueue", "hi", "-c", "c1", "--store", str(foreign)], cwd=tmp_path), 1, "another program")
    one_line(invoke(["queue", "stats", "--store", str(garbage)], cwd=tmp_path), 1, "not a usable SQLite database")
    one_line(invoke(["queue", "stats", "--store", str(newer)], cwd=tmp_path), 1, "schema version 99", "newer")

    assert {p: p.read_bytes() for p in before} == before  # no tables added, no switch to WAL
    assert not (tmp_path / "notes.db-wal").exists()


def test_a_new_store_is_private(tmp_path: Path) -> None:
    assert invoke(["enqueue", "hi", "-c", "c1"], cwd=tmp_path).code == 0
    folder, db = tmp_path / ".factory", tmp_path / ".factory" / "factory.db"
    conn = sqlite3.connect(db)  # held open: the WAL and SHM files exist meanwhile
    try:
        conn.execute("PRAGMA journal_mode").fetchone()
        conn.execute("SELECT count(*) FROM messages").fetchone()
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    finally:
        conn.close()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert modes == {"factory.db": 0o600, "factory.db-wal": 0o600, "factory.db-shm": 0o600}


# ------------------------------------------------------------------------------ worker start-up


def test_worker_start_up_problems_are_one_line_before_anything_is_claimed(seeded: Path) -> None:
    before = dump(seeded / ".factory" / "factory.db")
    env = {"OPENCLAW_GATEWAY_TOKEN": "t", "OPENCLAW_GATEWAY_URL": "http://127.0.0.1:9"}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        in_use = invoke(["worker", "run", "--once", "--health-port", port], cwd=seeded, env=env)
    one_line(in_use, 2, "FACTORY_HEALTH_PORT", "address already in use")
    not_here = {**env, "FACTORY_HEALTH_HOST": "192.0.2.1"}  # TEST-NET-1: never this machine's
    one_line(
        invoke(["worker", "run", "--once", "--health-port", "0"], cwd=seeded, env=not_here), 2, "FACTORY_HEALTH_HOST"
    )
    (seeded / "corrupt.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    one_line(invoke(["worker", "run", "--once", "--store", "corrupt.db"], cwd=seeded, env=env), 1, "corrupt.db")
    assert dump(seeded / ".factory" / "factory.db") == before


@pytest.mark.convex
def test_a_store_that_refuses_the_worker_is_one_line(tmp_path: Path, convex_standin: StandIn) -> None:
    convex_standin.reset()  # identity mode: a caller without a token is refused
    env = {"OPENCLAW_GATEWAY_TOKEN": "t", "FACTORY_STORE": convex_standin.url}

    one_line(invoke(["worker", "run", "--once"], cwd=tmp_path, env=env), 1, convex_standin.url)


@pytest.mark.gateway
def test_an_exited_worker_is_not_counted_as_active(tmp_path: Path, openclaw_gateway: OpenClawGateway) -> None:
    assert invoke(["enqueue", "hi", "-c", "c1"], cwd=tmp_path).code == 0
    env = {
        "OPENCLAW_GATEWAY_URL": openclaw_gateway.url,
        "OPENCLAW_GATEWAY_TOKEN": openclaw_gateway.token.get_secret_value(),
    }
    assert invoke(["worker", "run", "--once"], cwd=tmp_path, env=env).code == 0

    stats = invoke(["queue", "stats", "--json"], cwd=tmp_path)
    assert '"workers": {"stopped": 1}' in stats.stdout, stats.stdout


def test_factory_run_checks_its_store_before_starting_a_gateway(tmp_path: Path) -> None:
    (tmp_path / "regular").write_text("a file")

    result = invoke(["run", "--store", "regular/x.db"], cwd=tmp_path)

    one_line(result, 1, "regular/x.db")
    assert not (tmp_path / ".factory" / "run" / "gateway").exists()
    assert "OpenClaw" not in result.stdout  # neither installed nor started
