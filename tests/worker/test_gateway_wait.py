"""A worker started beside its gateway registers at once and claims only once the gateway is ready."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from contracts.sqlite import SqliteStore
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import build_worker, eventually, message
from worker.loop import GatewayNotReady
from worker.openclaw.ready import ReadyProbe
from worker.openclaw.ws import WsDelivery

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "w.db")
    try:
        yield s
    finally:
        await s.aclose()


@pytest.mark.gateway
async def test_the_first_claim_waits_for_the_gateway(store: SqliteStore, openclaw_gateway: OpenClawGateway) -> None:
    message_id = await store.enqueue(message("conv-wait", "hello once it is up"))
    probe = ReadyProbe(openclaw_gateway.url)
    up = anyio.Event()

    async def gated() -> bool:  # the real /readyz, held back until the test lets it through
        return up.is_set() and await probe()

    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        worker, _ = build_worker(store, delivery, gateway_wait_s=30, idle_exit_s=1)
        worker.gateway_ready = gated
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)

            async def registered() -> bool:
                return any(w.worker_id == "w1" for w in await store.list_workers())

            await eventually(registered, what="registration before the gateway is ready")
            await anyio.sleep(0.5)
            record = await store.get_message(message_id)
            assert record is not None and record.status == "queued" and record.attempts == 0
            up.set()

            async def done() -> bool:
                found = await store.get_message(message_id)
                return found is not None and found.status == "done"

            await eventually(done, what="the message processed once the gateway is ready")


async def test_a_gateway_that_never_gets_ready_ends_the_worker_before_any_claim(store: SqliteStore) -> None:
    message_id = await store.enqueue(message("conv-never", "hello?"))
    async with WsDelivery("ws://127.0.0.1:9", "token", timeout_s=5) as delivery:
        worker, _ = build_worker(store, delivery, gateway_wait_s=0.5)
        worker.gateway_ready = ReadyProbe("ws://127.0.0.1:9")  # nothing listens there
        with pytest.raises(GatewayNotReady, match="FACTORY_GATEWAY_WAIT_S"):
            await worker.run()
    record = await store.get_message(message_id)
    assert record is not None and record.status == "queued" and record.attempts == 0
