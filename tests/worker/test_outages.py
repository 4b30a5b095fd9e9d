"""Infrastructure faults never spend a message's attempts: the worker gives the message back, says
why on /readyz, probes until the fault clears, and carries on.

These run a real worker in-process against a real SQLite store and the scripted gateway of
tests/gateway/fake_gateway.py, which can rotate its token, drop its sockets and fail runs on cue
(the real gateway cannot be made to do that on demand). The real gateway's outages are in
test_outage_processes.py and `make chaos`.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection

from contracts.clock import ManualClock, SystemClock
from contracts.sqlite import SqliteStore
from tests.gateway.fake_gateway import TOKEN, FakeGateway, answer_echo, fake_gateway, res
from tests.worker.harness import build_worker, eventually, message
from worker.loop import Worker
from worker.metrics import WorkerMetrics
from worker.openclaw.ws import WsDelivery

pytestmark = pytest.mark.anyio


def _count(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"factory_worker_{name}_total", labels or None) or 0.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "w.db", clock=SystemClock(), rng=random.Random(3), busy_timeout_s=0.2)
    try:
        yield s
    finally:
        await s.aclose()


async def _records(store: SqliteStore, ids: list[str]) -> list[tuple[str, int]]:
    records = [await store.get_message(i) for i in ids]
    return [(r.status, r.attempts) for r in records if r is not None]


async def _until_reason(worker: Worker, text: str) -> None:
    async def said() -> bool:
        return any(text in reason for reason in worker.readiness.reasons())

    await eventually(said, timeout_s=10, what=f"/readyz to say {text!r}")


async def test_a_token_the_gateway_stops_accepting_mid_run_spends_nothing(store: SqliteStore) -> None:
    rotated = False

    async def rotate_on_two(ws: ServerConnection, request: dict[str, Any], connection: int) -> None:
        nonlocal rotated
        if request["params"].get("message") == "two" and not rotated:
            # The operator restarts the gateway with another token while "two" is being delivered.
            rotated, gateway.token = True, "rotated"
            await gateway.drop()
            return
        await answer_echo(ws, request, connection)

    ids = [await store.enqueue(message("rot", text)) for text in ("one", "two", "three")]
    async with fake_gateway(rotate_on_two) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        worker, metrics = build_worker(store, delivery, idle_exit_s=0.5)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await _until_reason(worker, "AUTH_TOKEN_MISMATCH")
            assert not worker.readiness.ready
            assert await _records(store, ids) == [("done", 1), ("queued", 0), ("queued", 0)]
            gateway.token = TOKEN  # fixed on the gateway's side: the worker notices by itself
    assert await _records(store, ids) == [("done", 1), ("done", 1), ("done", 1)]
    assert _count(metrics, "releases", component="gateway") == 1
    assert _count(metrics, "fails", retryable="true") == 0 and _count(metrics, "dead_letters") == 0
    conversation = await store.get_conversation("rot")
    assert conversation is not None and [m.content for m in conversation.history][1::2] == [
        "echo: one",
        "echo: two",
        "echo: three",
    ]


async def test_a_failed_run_is_the_model_s_fault_only_if_a_probe_turn_fails_too(store: SqliteStore) -> None:
    model_down = True

    async def runs(ws: ServerConnection, request: dict[str, Any], connection: int) -> None:
        text = request["params"].get("message", "")
        if request["method"] == "agent" and (model_down or text == "poison"):
            run_id = request["params"]["idempotencyKey"]
            await ws.send(res(request, payload={"runId": run_id, "status": "accepted"}))
            error = {"code": "UNAVAILABLE", "message": "stub/stub-model request failed (HTTP 500)"}
            await ws.send(res(request, ok=False, payload={"runId": run_id, "status": "error"}, error=error))
            return
        await answer_echo(ws, request, connection)

    fine = await store.enqueue(message("m-1", "fine"))
    poison = await store.enqueue(message("m-2", "poison", max_attempts=2))
    async with fake_gateway(runs) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        worker, metrics = build_worker(store, delivery, idle_exit_s=3)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            # Every run fails, a probe turn too: the model is down. Nothing is spent.
            await _until_reason(worker, "HTTP 500")
            assert await _records(store, [fine, poison]) == [("queued", 0), ("queued", 0)]
            model_down = False
    # Once the model answers probes again, only the message it still fails is the message's fault.
    assert await _records(store, [fine, poison]) == [("done", 1), ("dead_letter", 2)]
    assert _count(metrics, "fails", retryable="true") == 2 and _count(metrics, "dead_letters") == 1
    assert _count(metrics, "releases", component="gateway") >= 1
    probes = [r for r in gateway.requests if r["params"].get("sessionKey", "").endswith(":factory-probe")]
    assert probes and all(r["params"]["message"] == "ping" for r in probes)


async def test_a_locked_store_is_waited_out_and_nothing_is_lost(store: SqliteStore, tmp_path: Path) -> None:
    ids = [await store.enqueue(message(f"lk-{i}", f"locked {i}")) for i in range(3)]
    async with fake_gateway() as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        worker, metrics = build_worker(store, delivery, idle_exit_s=0.5)
        # Another process holds the write lock: every write waits its 0.2 s busy timeout and fails.
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await _until_reason(worker, "database is locked")
                holder.execute("ROLLBACK")
        finally:
            holder.close()
    assert await _records(store, ids) == [("done", 1)] * 3
    assert _count(metrics, "outages", component="store") >= 1
    assert json.dumps(worker.readiness.reasons()) == '["draining"]'


@dataclass
class _LockedTurn:
    message_id: str
    metrics: WorkerMetrics
    gateway: FakeGateway


@asynccontextmanager
async def _store_locked_during_the_turn(store: SqliteStore, conversation: str, text: str) -> AsyncIterator[_LockedTurn]:
    """A worker (``--once``) whose turn takes the store's write lock while it runs, so that its
    complete cannot be written: the body runs once the worker says so, then the lock is let go."""
    holder = sqlite3.connect(store.path, isolation_level=None)
    locked = False

    async def lock_then_answer(ws: ServerConnection, request: dict[str, Any], connection: int) -> None:
        nonlocal locked
        if request["params"].get("message") == text and not locked:
            locked = True
            holder.execute("BEGIN IMMEDIATE")  # taken while the turn runs: its complete cannot be written
        await answer_echo(ws, request, connection)

    message_id = await store.enqueue(message(conversation, text))
    try:
        async with fake_gateway(lock_then_answer) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
            worker, metrics = build_worker(store, delivery, once=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await _until_reason(worker, f"could not complete message {message_id}")
                yield _LockedTurn(message_id, metrics, gateway)
                holder.execute("ROLLBACK")
    finally:
        holder.close()


async def test_a_settle_the_store_cannot_take_is_sent_once_it_answers_again(store: SqliteStore) -> None:
    async with _store_locked_during_the_turn(store, "pend", "lock the store") as turn:
        assert await _records(store, [turn.message_id]) == [("processing", 1)]
    # The complete (with the history it carries) waited for the store and was sent once it
    # answered: no attempt spent, no second delivery, the history written once.
    assert await _records(store, [turn.message_id]) == [("done", 1)]
    assert _count(turn.metrics, "fails", retryable="true") == 0
    assert sum(1 for r in turn.gateway.requests if r["params"].get("message") == "lock the store") == 1
    conversation = await store.get_conversation("pend")
    assert conversation is not None and [m.role for m in conversation.history] == ["user", "assistant"]


async def test_a_complete_refused_because_the_lease_lapsed_in_an_outage_gives_the_attempt_back(
    tmp_path: Path,
) -> None:
    """The turn ends while the store is out of reach, and the store stays away longer than the lease:
    the held complete is refused (lease expired). The worker was alive and done, so that is not the
    message's fault: it gives the message back (fenced) and the attempt is undone."""
    clock = ManualClock()
    store = SqliteStore(tmp_path / "lapse.db", clock=clock, rng=random.Random(3), busy_timeout_s=0.2)
    try:
        async with _store_locked_during_the_turn(store, "lapse", "outlast the lease") as turn:
            clock.advance(10 * 60_000)  # the store is away far longer than the lease
        record = await store.get_message(turn.message_id)
    finally:
        await store.aclose()
    assert record is not None and (record.status, record.attempts) == ("queued", 0)
    assert record.last_error == "released: complete refused: lease_expired"
    assert _count(turn.metrics, "fails", retryable="true") == 0
