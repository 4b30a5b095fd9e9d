"""Log capture: the worst cases, run with known token values, and every line and file searched.

Every credential the fleet handles gets a distinctive value; then the paths most likely to leak
one run at debug level: a gateway that echoes the request's headers into its error, a Convex URL
that refuses connections, a Fly API that answers with the token in its error body, a local worker
launched by the reconciler against a gateway that is not there. Each value must appear in no
output line, no error and no file written (logs, launch records, the store outside its secrets
table), and every file written is private.
"""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest

from autoscaler.providers.local import LocalConfig, LocalProvider
from tests.cli.inprocess import invoke
from tests.fakes import FakeFlyApi

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CANARIES = {
    "CONVEX_AUTH_TOKEN": "cvx-canary-9f2c1d",
    "OPENCLAW_GATEWAY_TOKEN": "gw-canary-4b7e0a",
    "FLY_API_TOKEN": "fly-canary-83d1c2",
    "DIGITALOCEAN_TOKEN": "do-canary-51aa90",
    "OPENAI_API_KEY": "sk-canary-77e3b1",
    "AWS_SECRET_ACCESS_KEY": "aws-canary-0c9d4e",
}
BOT_TOKEN = "4242:bot-canary-6f1e"


class _Echo(BaseHTTPRequestHandler):
    """A hostile gateway: every request is answered 500 with its own headers in the body."""

    def do_POST(self) -> None:
        body = json.dumps({"error": {"message": f"upstream failed; you sent {dict(self.headers)}"}}).encode()
        self.send_response(500)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _leaks(text: str) -> list[str]:
    """The canaries ``text`` holds, as written or URL-encoded."""
    found = []
    for name, value in {**CANARIES, "bot token": BOT_TOKEN}.items():
        if any(form in text for form in (value, quote(value), quote(value, safe=""))):
            found.append(name)
    return found


def _store_text(path: Path) -> str:
    """Everything the store holds except its secrets table (where a bot token belongs)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return "\n".join(line for line in conn.iterdump() if '"secrets"' not in line)
    finally:
        conn.close()


def test_no_token_reaches_a_log_an_error_or_a_file(tmp_path: Path, echo_gateway: str) -> None:
    outputs: list[str] = []
    env = {**CANARIES, "FACTORY_LOG_LEVEL": "debug"}

    def run(*args: str, extra: dict[str, str] | None = None, stdin: str = "") -> None:
        result = invoke(args, cwd=tmp_path, env={**env, **(extra or {})}, stdin=stdin)
        outputs.append(f"$ factory {' '.join(args)} → {result.code}\n{result.stdout}{result.stderr}")

    run("agent", "secret", "telegram.botToken.default", stdin=BOT_TOKEN + "\n")
    run("enqueue", "hello", "-c", "c1", "--provider", "telegram", "--user-id", "42", "--max-attempts", "1")
    # A gateway that echoes our Authorization header into its error.
    # A gateway answering 500 is an outage, not the message's fault: the worker waits it out, here
    # for 3 s (the default with --once is a minute), then exits with the cause, which is searched.
    run(
        "worker",
        "run",
        "--once",
        extra={"OPENCLAW_GATEWAY_URL": echo_gateway, "FACTORY_DELIVERY": "http", "FACTORY_MAX_OUTAGE_S": "3"},
    )
    assert "stayed unavailable for 3 s" in outputs[-1] and "500" in outputs[-1], outputs[-1]
    run("queue", "dead-letters", "--json")
    run("conversation", "show", "c1")
    # A Convex deployment that refuses connections (loopback, so the token may be sent), and one
    # over plain http elsewhere (refused before anything is sent).
    run("queue", "stats", "--store", "http://127.0.0.1:9", extra={"FACTORY_STORE_TIMEOUT_S": "1"})
    run("queue", "stats", "--store", "http://convex.example.com")
    # Fly answering the secret and the create with the credentials in its error bodies.
    run("enqueue", "again", "-c", "c2", "--max-attempts", "1")
    with FakeFlyApi(token=CANARIES["FLY_API_TOKEN"]) as fly:
        echoed = f"env CONVEX_AUTH_TOKEN={CANARIES['CONVEX_AUTH_TOKEN']} token {CANARIES['FLY_API_TOKEN']}"
        fly.fail_next("set_secret", 422, body={"error": echoed})
        fly_env = {
            "FLY_APP": fly.app,
            "FLY_IMAGE": "registry.fly.io/factory-worker:1",
            "FLY_API_BASE_URL": fly.url,
            "FACTORY_WORKER_STORE": "https://happy-animal-123.convex.cloud",
            "FACTORY_SCALE_POOL_SIZE": "0",  # one create to count, not a warm pool's prefill
        }
        run("reconcile", "--provider", "fly", extra=fly_env)
        fly.fail_next("create", 422, body={"error": echoed})
        run("reconcile", "--provider", "fly", extra=fly_env)
        assert (fly.count("set_secret"), fly.count("create")) == (2, 1), "\n".join(outputs)
    # A local worker, launched with the gateway token, against a gateway that is not there.
    local_env = {"OPENCLAW_GATEWAY_URL": "http://127.0.0.1:9", "FACTORY_SCALE_IDLE_TIMEOUT_S": "1"}
    run("reconcile", "--provider", "local", extra=local_env)
    _wait_for_local_workers(tmp_path / ".factory" / "local")
    assert any("not available yet" in text for text in _local_logs(tmp_path / ".factory" / "local")), (
        "the local worker never tried the gateway"
    )

    assert not [(out.splitlines()[0], _leaks(out)) for out in outputs if _leaks(out)], "\n\n".join(outputs)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in written), "the local worker wrote no log"
    for path in written:
        text = _store_text(path) if path.name == "factory.db" else path.read_bytes().decode(errors="replace")
        assert not _leaks(text), (path, _leaks(text))
        if ".factory" in path.parts and not path.name.endswith(("-wal", "-shm")):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    assert stat.S_IMODE((tmp_path / ".factory").stat().st_mode) == 0o700


def _local_logs(state_dir: Path) -> list[str]:
    return [log.read_text(errors="replace") for log in state_dir.rglob("*.log")]


def _wait_for_local_workers(state_dir: Path, timeout_s: float = 60.0) -> None:
    """Let the launched worker run until it has logged the unreachable gateway (the request that
    carried the token failed) or exited, then stop it: its shutdown is logged too."""

    def logged_the_outage() -> bool:
        return any("not available yet" in text for text in _local_logs(state_dir))

    async def settle() -> None:
        provider = LocalProvider(LocalConfig(state_dir=state_dir, stop_timeout_s=5))
        try:
            with anyio.move_on_after(timeout_s):
                # Polling is the point: a detached process's exit and log are only seen in its files.
                while not logged_the_outage() and any(  # noqa: ASYNC110
                    m.state in ("starting", "running") for m in await provider.list()
                ):
                    await anyio.sleep(0.2)
            await provider.destroy_all()
        finally:
            await provider.aclose()

    started = time.monotonic()
    anyio.run(settle)
    assert time.monotonic() - started < timeout_s + 30
