"""The worker loop on the one-call hot path, at its edges: a drain order that arrives on a heartbeat
answer, and a next job claimed by a complete that returned after the worker was told to stop.

A real worker in-process, a real SQLite store (counted through the worker role), and the scripted
gateway of tests/gateway/fake_gateway.py (a turn that takes as long as the test needs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection

from bench.counted_store import CountedStore
from contracts.models import SetWorkerStatusRequest
from contracts.sqlite import SqliteStore
from tests.gateway.fake_gateway import TOKEN, answer_echo, fake_gateway
from tests.worker.harness import build_worker, message
from worker.openclaw.ws import WsDelivery

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    # A 3 s lease: the worker heartbeats every second.
    s = SqliteStore(tmp_path / "w.db", lease_ttl_ms=3_000)
    try:
        yield s
    finally:
        await s.aclose()


async def test_a_drain_order_on_a_heartbeat_answer_lets_the_job_finish_and_claims_nothing_more(
    store: SqliteStore,
) -> None:
    async def drain_mid_turn(ws: ServerConnection, request: dict[str, Any], connection: int) -> None:
        if request["params"].get("message") == "drain me":
            drain = SetWorkerStatusRequest(worker_id="w1", status="draining", reason="scale down")
            assert await store.fleet_set_worker_status(drain)
            await anyio.sleep(1.6)  # a heartbeat answers meanwhile, saying to stop
        await answer_echo(ws, request, connection)

    first = await store.enqueue(message("d-1", "drain me"))
    left = await store.enqueue(message("d-2", "left for another worker"))
    counted = CountedStore(store)
    async with fake_gateway(drain_mid_turn) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        worker, _ = build_worker(counted, delivery)
        done = await worker.run()
    assert (done.reason, done.processed, done.detail) == ("control", 1, "status draining: scale down")
    assert [(r.status, r.attempts) for r in [await store.get_message(i) for i in (first, left)] if r] == [
        ("done", 1),
        ("queued", 0),
    ]
    # The complete claimed nothing next and no claim followed: the heartbeat had said it all.
    assert "worker_heartbeat" in counted.calls
    assert [c for c in counted.calls if c != "worker_heartbeat"][-2:] == ["worker_claim", "worker_complete"]


async def test_a_next_job_claimed_as_the_worker_is_stopped_is_given_back_unspent(store: SqliteStore) -> None:
    first = await store.enqueue(message("s-1", "finish me"))
    chained = await store.enqueue(message("s-2", "claimed next, never started"))
    # A stop that lands while the complete, and the next claim it carries, are on their way.
    stopping = CountedStore(store)
    async with fake_gateway() as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        worker, _ = build_worker(stopping, delivery)
        stopping.on_complete = lambda _: worker.request_stop()
        done = await worker.run()
    assert (done.reason, done.processed) == ("signal", 1)
    records = [await store.get_message(i) for i in (first, chained)]
    assert [(r.status, r.attempts) for r in records if r] == [("done", 1), ("queued", 0)]
    assert [c for c in stopping.calls if c != "worker_heartbeat"][-2:] == ["worker_complete", "worker_release"]
    assert not any(r["params"].get("message") == "claimed next, never started" for r in gateway.requests)
