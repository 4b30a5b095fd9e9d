"""``factory runtime`` as a real process against the real gateway: a kill mid-delivery, then SIGTERM.

The store's lease is short (2 s) so the restarted runtime takes the killed one's delivery over
in seconds; ``SLOW:<ms>`` makes the stub model take that long.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import httpx
import pytest

from contracts.models import MessageRecord
from contracts.runtime import Account, AccountView, Notification, RuntimeAgent, Task, new_service_token, token_hash
from contracts.sqlite import SqliteStore
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import worker_env

pytestmark = [pytest.mark.gateway, pytest.mark.slow]
TTL_MS = 2000
T = TypeVar("T")


def _in_store(db: Path, action: Callable[[SqliteStore], Awaitable[T]]) -> T:
    async def run() -> T:
        store = SqliteStore(db, lease_ttl_ms=TTL_MS)
        try:
            return await action(store)
        finally:
            await store.aclose()

    return anyio.run(run)


async def _setup(store: SqliteStore) -> str:
    await store.account_put(Account(account_id="kilo", name="Kilo"))
    token = new_service_token()
    await store.account_token("kilo", token_hash(token))
    await store.runtime_agent_put(RuntimeAgent(agent_id="kilo-jarvis", account_id="kilo", name="J", slug="jarvis"))
    await store.task_put(Task(task_id="t1", account_id="kilo", title="Survive"))
    note = Notification(
        notification_id="n-kill", account_id="kilo", agent_id="kilo-jarvis", type="mention",
        title="rt-survive-a-kill", body="SLOW:3000 please", task_id="t1",
    )  # fmt: skip
    await store.notification_post(note)
    return token.get_secret_value()


def _view(db: Path) -> AccountView:
    view = _in_store(db, lambda s: s.account_view("kilo"))
    assert view is not None
    return view


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _delivery(db: Path) -> MessageRecord | None:
    """The notification's queue message (a heartbeat may share the conversation)."""
    found = _in_store(db, lambda s: s.conversation_records("agent:jarvis:kilo"))
    return next((r for r in found if r.payload.external_message_id == "n-kill"), None)


def _processing(db: Path) -> bool:
    record = _delivery(db)
    return record is not None and record.status == "processing"


def _start(db: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "factory", "runtime", "--account", "kilo", "--store", str(db)]
    with open(log, "ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_runtime_killed_mid_delivery_loses_and_repeats_nothing_and_sigterm_takes_it_offline(
    tmp_path: Path, openclaw_gateway: OpenClawGateway
) -> None:
    db = tmp_path / "kill.db"
    token = _in_store(db, _setup)
    port = _free_port()
    env = worker_env(
        openclaw_gateway, SERVICE_TOKEN=token, HEALTH_PORT=str(port), DELIVERY_INTERVAL="200",
        HEALTH_CHECK_INTERVAL="300", FACTORY_GRACE_S="20", OPENCLAW_STATE_DIR=str(openclaw_gateway.state_dir),
    )  # fmt: skip
    victim = _start(db, env, tmp_path / "victim.log")
    try:
        _wait(lambda: _processing(db), 90, "the notification's delivery to start")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        victim.kill()
    assert _view(db).notifications[0].delivered_at is None
    rescuer = _start(db, env, tmp_path / "rescuer.log")
    try:
        _wait(lambda: _view(db).notifications[0].delivered_at is not None, 120, "the notification delivered")
        _wait(lambda: _view(db).account.status == "online", 30, "the runtime status online")
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10, trust_env=False).json()
        assert health["status"] == "healthy" and health["gateway"]["running"] is True
        rescuer.send_signal(signal.SIGTERM)
        assert rescuer.wait(60) == 0
    finally:
        rescuer.kill()
    view = _view(db)
    assert view.account.status == "offline"
    assert [(m.task_id, m.content) for m in view.messages] == [("t1", view.messages[0].content)]
    assert "rt-survive-a-kill" in view.messages[0].content
    record = _delivery(db)
    assert record is not None and (record.status, record.attempts) == ("done", 2)
    # The gateway knew the redelivery by its idempotency key: one model call in all.
    assert len(openclaw_gateway.calls_for("rt-survive-a-kill")) == 1
    # The agent's worker snapshotted its state once (what a deprovision keeps for the next machine):
    # when it ran out of work, or at the SIGTERM if that came first.
    snapshots = _in_store(db, lambda s: s.snapshot_list("agent:jarvis:kilo"))
    assert [(x.agent_key, x.status) for x in snapshots] == [(record.agent_key, "ready")]
    assert snapshots[0].reason in ("idle", "signal")
