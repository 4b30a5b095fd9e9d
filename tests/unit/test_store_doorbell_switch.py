"""FACTORY_SQLITE_DOORBELL=0: a poll-only embedded store is never woken early, yet still finds work."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from contracts.models import EnqueueRequest, MessagePayload, WorkerRegistration
from contracts.roles import WorkerStore
from contracts.sqlite import SqliteStore
from contracts.sqlite.doorbell import Doorbell
from factory.settings import StoreSettings, load
from factory.stores import open_store
from tests.waiting import wait_while
from worker.config import WorkerConfig
from worker.delivery import DeliveryReply, DeliveryRequest
from worker.health import Readiness
from worker.job import JobRunner
from worker.loop import Worker
from worker.metrics import WorkerMetrics

pytestmark = pytest.mark.anyio


def _request(text: str) -> EnqueueRequest:
    return EnqueueRequest(
        conversation_id="conv-1",
        agent_key="default",
        payload=MessagePayload(provider="app", provider_user_id="u", message_text=text),
    )


async def _wait_while_enqueueing(waiter: WorkerStore, writer: SqliteStore, timeout_s: float) -> tuple[bool, float]:
    """Start ``waiter.wait_for_work``, enqueue through ``writer`` meanwhile; (rung, seconds waited).
    By 0.05 s in, the waiter is listening (or sleeping)."""
    return await wait_while(
        lambda: waiter.wait_for_work(timeout_s), lambda: writer.enqueue(_request("hello")), after_s=0.05
    )


async def test_a_store_with_the_doorbell_is_woken_by_an_enqueue(tmp_path: Path) -> None:
    db = tmp_path / "bell.db"
    waiter, writer = SqliteStore(db), SqliteStore(db)
    try:
        rung, waited = await _wait_while_enqueueing(waiter, writer, timeout_s=5)
        assert rung and waited < 2
    finally:
        await waiter.aclose()
        await writer.aclose()


async def test_a_poll_only_store_sleeps_out_its_poll_and_then_claims_the_work(tmp_path: Path) -> None:
    db = tmp_path / "poll.db"
    waiter, writer = SqliteStore(db, doorbell=False), SqliteStore(db)
    try:
        rung, waited = await _wait_while_enqueueing(waiter, writer, timeout_s=0.5)
        assert not rung and waited >= 0.45
        assert not await anyio.Path(f"{db}.bell").exists()  # it never listed itself as a listener
        await waiter.worker_register(WorkerRegistration(worker_id="w1", provider="test"))
        job = await waiter.worker_claim("w1")
        assert job is not None and job.payload.message_text == "hello"
    finally:
        await waiter.aclose()
        await writer.aclose()


async def test_the_setting_turns_the_doorbell_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "setting.db"
    monkeypatch.setenv("FACTORY_STORE", str(db))
    monkeypatch.setenv("FACTORY_SQLITE_DOORBELL", "0")
    settings = load(StoreSettings)
    assert settings.sqlite_doorbell is False
    waiter, writer = open_store(settings), SqliteStore(db)
    try:
        rung, _ = await _wait_while_enqueueing(waiter, writer, timeout_s=0.3)
        assert not rung
    finally:
        await waiter.aclose()
        await writer.aclose()
    monkeypatch.delenv("FACTORY_SQLITE_DOORBELL")
    assert load(StoreSettings).sqlite_doorbell is True


async def _until_done(store: SqliteStore, message_id: str) -> None:
    for _ in range(1_000):
        record = await store.get_message(message_id)
        if record is not None and record.status == "done":
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"message {message_id} was never completed")


class _Echo:
    async def deliver(self, request: DeliveryRequest) -> DeliveryReply:
        return DeliveryReply(text=f"echo: {request.text}")

    async def probe(self, agent_id: str | None = None) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def test_a_worker_on_a_poll_only_store_still_processes_work(tmp_path: Path) -> None:
    db = tmp_path / "worker.db"
    store, writer = SqliteStore(db, doorbell=False), SqliteStore(db)
    metrics, readiness = WorkerMetrics(), Readiness()
    runner = JobRunner(
        delivery=_Echo(),
        channels={},
        session_key=lambda agent, conversation: f"agent:{agent}:{conversation}",
        metrics=metrics,
    )
    worker = Worker(WorkerConfig(worker_id="w1", poll_s=0.1), store, runner, metrics, readiness)
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(worker.run)
                await anyio.sleep(0.3)  # idle: waiting out its poll
                message_id = await writer.enqueue(_request("while idle"))
                await _until_done(writer, message_id)
                worker.request_stop()
    finally:
        await store.aclose()
        await writer.aclose()


async def test_a_ring_reaches_a_waiter_that_came_after_the_ringer_last_listed_the_folder(tmp_path: Path) -> None:
    # A ringer reuses its listing while the folder is unchanged: a new waiter must change it.
    db = tmp_path / "bell.db"
    early, late, ringer = Doorbell(db), Doorbell(db), Doorbell(db)
    woken: list[tuple[str, float]] = []

    async def wait(bell: Doorbell, name: str) -> None:
        if await bell.wait(5):
            woken.append((name, anyio.current_time()))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, early, "early")
            await anyio.sleep(0.1)  # listed, and past the folder's racy window: the listing is kept
            ringer.ring()
            await anyio.sleep(0.1)
            tg.start_soon(wait, late, "late")
            await anyio.sleep(0.1)
            rung_at = anyio.current_time()
            ringer.ring()
        assert [name for name, _ in woken] == ["early", "late"]
        assert woken[1][1] - rung_at < 2
    finally:
        for bell in (early, late, ringer):
            bell.close()
