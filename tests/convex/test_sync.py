"""Waiting for work on Convex: a subscription over the stand-in's /api/sync WebSocket, and the
poll it falls back to when the WebSocket cannot be used."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.convex import ConvexStore
from contracts.convex.standin import StandIn
from contracts.convex.sync import StoreClock, sync_url
from contracts.models import EnqueueRequest, LeaseRef, MessagePayload, WorkerRegistration
from tests.waiting import wait_while

pytestmark = [pytest.mark.anyio]
convex = pytest.mark.convex


@pytest.fixture
async def writer(fresh: StandIn) -> AsyncIterator[ConvexStore]:
    """A second client of the stand-in that enqueues while the store under test waits."""
    store = ConvexStore(fresh.url)
    yield store
    await store.aclose()


def request(conversation: str = "c1") -> EnqueueRequest:
    payload = MessagePayload(provider="app", provider_user_id="u", message_text="hi")
    return EnqueueRequest(conversation_id=conversation, agent_key="default", payload=payload)


async def _wait_while(store: ConvexStore, writer: ConvexStore, timeout_s: float, **kw: str) -> tuple[bool, float]:
    """Wait on ``store`` while ``writer`` enqueues to conversation ``to`` 0.2 s in."""
    to = kw.pop("to", "c1")
    return await wait_while(
        lambda: store.wait_for_work(timeout_s, **kw), lambda: writer.enqueue(request(to)), after_s=0.2
    )


def test_the_sync_url_follows_the_deployment_url() -> None:
    assert sync_url("https://happy-animal-123.convex.cloud") == "wss://happy-animal-123.convex.cloud/api/sync"
    assert sync_url("http://127.0.0.1:3210") == "ws://127.0.0.1:3210/api/sync"


def test_the_store_clock_is_estimated_from_the_last_answer() -> None:
    ticks = iter([10.0, 10.5])
    clock = StoreClock(monotonic=lambda: next(ticks))
    assert clock.now_ms() is None
    clock.saw(1_000)
    assert clock.now_ms() == 1_500


@convex
async def test_a_subscribed_wait_wakes_on_new_work_without_polling(fresh: StandIn, writer: ConvexStore) -> None:
    # A poll every 30 s could not wake within the test: only the subscription can.
    store = ConvexStore(fresh.url, wait_poll_s=30)
    woke, waited_s = await _wait_while(store, writer, 20)
    assert woke and waited_s < 10
    await store.aclose()


@convex
async def test_a_pinned_wait_wakes_for_its_own_conversation_only(fresh: StandIn, writer: ConvexStore) -> None:
    store = ConvexStore(fresh.url, wait_poll_s=30)
    woke, _ = await _wait_while(store, writer, 1.0, conversation_id="mine", to="other")
    assert not woke
    woke, waited_s = await _wait_while(store, writer, 20, conversation_id="mine", to="mine")
    assert woke and waited_s < 10
    await store.aclose()


@convex
async def test_without_the_websocket_the_wait_polls(fresh: StandIn, writer: ConvexStore) -> None:
    store = ConvexStore(fresh.url, wait_poll_s=0.02)
    await store.now_ms()  # the store knows the deployment's clock: the next call is the upgrade
    fresh.fail_next(1, 503)  # the upgrade is refused
    woke, waited_s = await _wait_while(store, writer, 20)
    assert woke and waited_s < 10
    await store.aclose()


@convex
async def test_without_the_websocket_the_fleet_wait_still_sees_a_worker_go_idle(
    fresh: StandIn, writer: ConvexStore
) -> None:
    """Polled, the watch's wait also reads ``fleetSignal``: a worker left with no job wakes it, as
    when subscribed, so a drain is not put off to the next interval."""
    watch = ConvexStore(fresh.url, wait_poll_s=0.02, subscribe=False)
    await writer.worker_register(WorkerRegistration(worker_id="w1", provider="local"))
    await writer.enqueue(request())
    job = await writer.worker_claim("w1")
    assert job is not None
    assert not await watch.wait_for_fleet_change(0.1)  # the first look only learns where things stand
    lease = LeaseRef(worker_id="w1", message_id=job.message_id, lease_id=job.lease_id)
    woke, _ = await wait_while(
        lambda: watch.wait_for_fleet_change(0.5), lambda: writer.worker_heartbeat(lease), after_s=0.1
    )
    assert not woke  # a busy worker's heartbeat is no news
    woke, waited_s = await wait_while(
        lambda: watch.wait_for_fleet_change(20), lambda: writer.worker_complete(lease), after_s=0.2
    )
    assert woke and waited_s < 10
    await watch.aclose()
