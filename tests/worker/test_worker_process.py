"""Workers as real processes against a real gateway: crashes, shutdowns and the CLI.

Each test runs ``factory worker run`` in its own process with a short lease (2 s), so a crash
is recovered in seconds. ``SLOW:<ms>`` in a message makes the stub model take that long.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from contracts.models import MessageRecord
from contracts.sqlite import SqliteStore
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import message, start_worker_process, worker_env

pytestmark = [pytest.mark.gateway, pytest.mark.slow]
TTL_S = 2


def _store(path: Path) -> SqliteStore:
    return SqliteStore(path, lease_ttl_ms=TTL_S * 1000)


def _enqueue(path: Path, conversation: str, text: str, *, max_attempts: int = 5) -> str:
    async def run() -> str:
        store = _store(path)
        try:
            return await store.enqueue(message(conversation, text, max_attempts=max_attempts))
        finally:
            await store.aclose()

    return anyio.run(run)


def _record(path: Path, message_id: str) -> MessageRecord:
    async def run() -> MessageRecord:
        store = _store(path)
        try:
            record = await store.get_message(message_id)
            assert record is not None
            return record
        finally:
            await store.aclose()

    return anyio.run(run)


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _processing(path: Path, message_id: str, attempt: int) -> Callable[[], bool]:
    def check() -> bool:
        record = _record(path, message_id)
        return record.status == "processing" and record.attempts == attempt

    return check


def test_worker_run_once_processes_a_message_and_exits_0(tmp_path: Path, openclaw_gateway: OpenClawGateway) -> None:
    db = tmp_path / "once.db"
    message_id = _enqueue(db, "cli-once", "from the command line")
    result = subprocess.run(
        [sys.executable, "-m", "factory", "worker", "run", "--once", "--store", str(db)],
        env=worker_env(openclaw_gateway),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert _record(db, message_id).status == "done"
    shown = subprocess.run(
        [sys.executable, "-m", "factory", "conversation", "show", "cli-once", "--store", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "STUB-REPLY: from the command line" in shown.stdout


def test_sigkill_mid_job_is_redelivered_and_completes_once(tmp_path: Path, openclaw_gateway: OpenClawGateway) -> None:
    db = tmp_path / "kill.db"
    env = worker_env(openclaw_gateway)  # the lease length is the store's (set in _store); workers never carry it
    message_id = _enqueue(db, "kill-once", "SLOW:3000 survive a crash")
    victim = start_worker_process(db, env, log=tmp_path / "victim.log")
    try:
        _wait(_processing(db, message_id, 1), 60, "the first delivery")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        victim.kill()
    rescuer = start_worker_process(db, env, "--idle-exit", "3", log=tmp_path / "rescuer.log")
    try:
        assert rescuer.wait(90) == 0
    finally:
        rescuer.kill()
    record = _record(db, message_id)
    assert (record.status, record.attempts) == ("done", 2)
    # The gateway recognised the redelivery by its idempotency key: one model call in all.
    assert len(openclaw_gateway.calls_for("survive a crash")) == 1


def test_a_message_that_kills_every_worker_ends_dead_lettered(
    tmp_path: Path, openclaw_gateway: OpenClawGateway
) -> None:
    db = tmp_path / "poison.db"
    env = worker_env(openclaw_gateway)  # the lease length is the store's (set in _store); workers never carry it
    message_id = _enqueue(db, "poison", "SLOW:60000 poison pill", max_attempts=3)
    after_id = _enqueue(db, "poison", "after the poison")
    for attempt in (1, 2, 3):
        worker = start_worker_process(db, env, log=tmp_path / f"victim-{attempt}.log")
        try:
            _wait(_processing(db, message_id, attempt), 60, f"delivery {attempt}")
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        finally:
            worker.kill()
    survivor = start_worker_process(db, env, "--idle-exit", "3", log=tmp_path / "survivor.log")
    try:
        assert survivor.wait(90) == 0
    finally:
        survivor.kill()
    dead = _record(db, message_id)
    assert dead.status == "dead_letter" and dead.attempts == 3
    assert dead.last_error is not None and "lease expired" in dead.last_error
    assert _record(db, after_id).status == "done"


def test_sigterm_lets_the_job_finish_within_the_grace_period(tmp_path: Path, openclaw_gateway: OpenClawGateway) -> None:
    db = tmp_path / "term.db"
    env = worker_env(openclaw_gateway)
    message_id = _enqueue(db, "term", "SLOW:2500 finish before leaving")
    worker = start_worker_process(db, env, "--grace", "30", log=tmp_path / "term.log")
    try:
        _wait(_processing(db, message_id, 1), 60, "the delivery")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    finally:
        worker.kill()
    assert _record(db, message_id).status == "done"


def test_sigterm_past_the_grace_period_gives_the_job_back_unspent(
    tmp_path: Path, openclaw_gateway: OpenClawGateway
) -> None:
    db = tmp_path / "cut.db"
    env = worker_env(openclaw_gateway)
    message_id = _enqueue(db, "cut", "SLOW:20000 too slow to wait for")
    worker = start_worker_process(db, env, "--grace", "0.5", log=tmp_path / "cut.log")
    try:
        _wait(_processing(db, message_id, 1), 60, "the delivery")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        worker.kill()
    record = _record(db, message_id)
    # Leaving is not the message's fault: it goes back to its place without spending an attempt.
    assert (record.status, record.attempts) == ("queued", 0)
    assert record.last_error is not None and record.last_error.startswith("released: worker shut down")


def test_a_second_signal_exits_at_once(tmp_path: Path, openclaw_gateway: OpenClawGateway) -> None:
    db = tmp_path / "twice.db"
    # Long enough to be in flight at both signals; short, because the shared gateway finishes the
    # turn after the worker is gone, and stopping it at the end of the session waits for that.
    message_id = _enqueue(db, "twice", "SLOW:6000 interrupted twice")
    worker = start_worker_process(db, worker_env(openclaw_gateway), "--grace", "60", log=tmp_path / "twice.log")
    try:
        _wait(_processing(db, message_id, 1), 60, "the delivery")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert worker.poll() is None
        worker.send_signal(signal.SIGINT)
        assert worker.wait(10) == 130
    finally:
        worker.kill()
    # Nothing was settled: the lease will run out and the message be delivered again.
    assert _record(db, message_id).status == "processing"
