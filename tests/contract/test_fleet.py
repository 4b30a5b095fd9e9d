"""Workers, control state, the demand snapshot, history, hydration, the lock and the ledger."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from pydantic import SecretStr

from contracts.models import (
    AgentProfile,
    AppendRequest,
    HistoryMessage,
    LaunchRecord,
    MachineRef,
    NextClaim,
    SetWorkerStatusRequest,
    WorkerRegistration,
)
from contracts.rules import EXITED_VISIBLE_MS
from tests.contract.conftest import LEASE_TTL_MS, Harness
from tests.contract.helpers import Store, fail_of, lease_of, register, request
from tests.waiting import wait_while

pytestmark = pytest.mark.anyio


# --------------------------------------------------------------------------- workers


async def test_register_records_the_machine_and_is_repeatable(harness: Harness) -> None:
    store = harness.store
    reg = WorkerRegistration(
        worker_id="w1",
        provider="fly",
        machine_ref=MachineRef(machine_id="m-1", app_name="app", region="iad"),
        launch_id="L1",
        capabilities=["telegram"],
    )
    first = await store.worker_register(reg)
    assert (first.status, first.provider, first.launch_id) == ("active", "fly", "L1")
    assert first.machine_ref is not None and first.machine_ref.machine_id == "m-1"
    await harness.advance(5_000)
    second = await store.worker_register(reg)
    assert second.registered_at == first.registered_at
    assert second.heartbeat_at == first.heartbeat_at + 5_000
    assert [w.worker_id for w in await store.list_workers()] == ["w1"]


async def test_control_state_and_the_idle_poll_heartbeat(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await harness.advance(30_000)
    state = await store.worker_control_state("w1")
    assert not state.should_stop
    demand = await store.fleet_demand()
    assert demand.workers[0].heartbeat_age_ms == 0
    unknown = await store.worker_control_state("ghost")
    assert unknown.should_stop and unknown.reason


async def test_an_empty_claim_refreshes_the_heartbeat(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await harness.advance(30_000)
    assert await store.worker_claim("w1") is None
    assert (await store.fleet_demand()).workers[0].heartbeat_age_ms == 0


async def test_draining_stops_claims_and_tells_the_worker_to_stop(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    changed = await store.fleet_set_worker_status(
        SetWorkerStatusRequest(worker_id="w1", status="draining", reason="scale down")
    )
    assert changed
    state = await store.worker_control_state("w1")
    assert state.should_stop and state.reason is not None and "draining" in state.reason
    assert await store.worker_claim("w1") is None


async def test_worker_status_only_moves_forward(harness: Harness) -> None:
    store = harness.store
    await register(store)
    done = SetWorkerStatusRequest(worker_id="w1", status="stopped", reason="gone")
    assert await store.fleet_set_worker_status(done)
    back = SetWorkerStatusRequest(worker_id="w1", status="draining", reason="oops")
    assert not await store.fleet_set_worker_status(back)
    ghost = SetWorkerStatusRequest(worker_id="ghost", status="draining", reason="x")
    assert not await store.fleet_set_worker_status(ghost)
    # Registering again does not revive a stopped worker.
    assert (await store.worker_register(WorkerRegistration(worker_id="w1", provider="local"))).status == "stopped"


async def test_an_unregistered_worker_registers_by_claiming(harness: Harness) -> None:
    store = harness.store
    await store.enqueue(request())
    job = await store.worker_claim("upstream-style")
    assert job is not None
    assert [w.worker_id for w in await store.list_workers()] == ["upstream-style"]


# --------------------------------------------------------------------------- demand snapshot


async def test_demand_snapshot_counts_conversations_and_workers(harness: Harness) -> None:
    store = harness.store
    await register(store, "busy")
    await register(store, "idle")
    now = await store.now_ms()
    await store.enqueue(request("inflight", "x"))
    job = await store.worker_claim("busy")
    assert job is not None
    await store.enqueue(request("retrying", "y"))
    retry = await store.worker_claim("idle")
    assert retry is not None
    await store.worker_fail(fail_of(retry, worker_id="idle"))
    await store.enqueue(request("scheduled", "z", scheduled_for=now + 60_000))
    await harness.advance(100)
    await store.enqueue(request("ready-1", "a"))
    await store.enqueue(request("ready-2", "b"))
    await harness.advance(400)
    demand = await store.fleet_demand()
    assert demand.ready_conversations == 2
    assert demand.inflight_conversations == 1
    assert demand.retrying_conversations == 1
    assert demand.scheduled_conversations == 1
    assert demand.oldest_ready_age_ms == 400
    assert demand.next_ready_at is not None and demand.next_ready_at > demand.now
    views = {w.worker_id: w for w in demand.workers}
    assert views["busy"].busy and views["busy"].conversation_id == "inflight"
    assert not views["idle"].busy and views["idle"].idle_since is not None


async def test_an_expired_lease_counts_as_ready_not_in_flight(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request())
    assert await store.worker_claim("w1") is not None
    await harness.advance(LEASE_TTL_MS)
    demand = await store.fleet_demand()
    assert (demand.ready_conversations, demand.inflight_conversations) == (1, 0)
    assert not demand.workers[0].busy


async def test_a_worker_that_exited_stays_in_the_snapshot_as_stopped_for_a_while(harness: Harness) -> None:
    """The reconciler parks or destroys an exited worker's machine at once: it has to see the exit."""
    store = harness.store
    await store.worker_register(WorkerRegistration(worker_id="w1", provider="fly", launch_id="L1"))
    await register(store, "w2")
    await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id="w1", status="stopped", reason="exited"))
    demand = await store.fleet_demand()
    assert [(w.worker_id, w.status, w.launch_id) for w in demand.workers] == [
        ("w1", "stopped", "L1"),
        ("w2", "active", None),
    ]
    await harness.advance(EXITED_VISIBLE_MS - 1_000)
    assert [w.worker_id for w in (await store.fleet_demand()).workers] == ["w1", "w2"]
    await harness.advance(1_000)
    assert [w.worker_id for w in (await store.fleet_demand()).workers] == ["w2"]


async def test_recent_conversations_carry_their_arrival_gaps(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.enqueue(request("chatty", "1"))
    await harness.advance(10_000)
    await store.enqueue(request("chatty", "2"))
    now = (await store.fleet_demand()).now
    await store.enqueue(request("later", "not an arrival yet", scheduled_for=now + 3_600_000))
    await harness.advance(20_000)
    await store.enqueue(request("chatty", "3"))
    await store.enqueue(request("once", "a"))
    # "once" is answered: it stays in the snapshot (it may come back), no longer active.
    job = await store.worker_claim("w1", "once")
    assert job is not None
    await store.worker_complete(lease_of(job))
    recent = {r.conversation_id: r for r in (await store.fleet_demand()).recent}
    assert set(recent) == {"chatty", "once"}  # a message scheduled for later is not an arrival
    assert recent["chatty"].gaps_ms == [20_000, 10_000]  # newest first
    assert recent["chatty"].active and not recent["once"].active
    assert recent["once"].gaps_ms == [] and recent["once"].last_arrival_at >= recent["chatty"].last_arrival_at


# --------------------------------------------------------------------------- history and hydration


async def test_history_appends_once_per_message(harness: Harness) -> None:
    store = harness.store
    await register(store)
    message_id = await store.enqueue(request("c", "hi"))
    turns = [HistoryMessage(role="user", content="hi"), HistoryMessage(role="assistant", content="hello!")]
    first = await store.worker_append_conversation_messages(
        AppendRequest(conversation_id="c", messages=turns, message_id=message_id)
    )
    again = await store.worker_append_conversation_messages(
        AppendRequest(conversation_id="c", messages=turns, message_id=message_id)
    )
    assert (first.updated, first.message_count) == (True, 2)
    assert (again.updated, again.message_count) == (False, 2)
    conversation = await store.get_conversation("c")
    assert conversation is not None
    assert [m.content for m in conversation.history] == ["hi", "hello!"]
    assert conversation.queued == 1
    assert await store.get_conversation("missing") is None


async def test_hydration_bundle_has_profile_history_and_secrets(harness: Harness) -> None:
    store = harness.store
    await register(store)
    await store.upsert_agent_profile(
        AgentProfile(agent_key="bot", secrets_ref=["telegram.botToken.bot", "extra.key"], openclaw_agent_id="alpha")
    )
    assert await store.import_secret("telegram.botToken.bot", SecretStr("old")) == 1
    assert await store.import_secret("telegram.botToken.bot", SecretStr("123:abc")) == 2
    await store.enqueue(request("c", "hello", agent_key="bot"))
    assert await store.worker_hydration_bundle("nope") is None
    job = await store.worker_claim("w1")
    assert job is not None
    bundle = await store.worker_hydration_bundle(job.message_id)
    assert bundle is not None
    assert bundle.profile.openclaw_agent_id == "alpha"
    assert bundle.telegram_bot_token is not None and bundle.telegram_bot_token.get_secret_value() == "123:abc"
    assert "123:abc" not in repr(bundle)
    assert set(bundle.secrets) == {"telegram.botToken.bot"}
    assert bundle.payload.message_text == "hello"
    assert (await store.worker_complete(lease_of(job))).ok
    assert await store.worker_hydration_bundle(job.message_id) is None


async def test_the_default_agent_exists_in_a_new_store(harness: Harness) -> None:
    profile = await harness.store.get_agent_profile("default")
    assert profile is not None and profile.enabled
    assert await harness.store.get_agent_profile("nobody") is None


# --------------------------------------------------------------------------- the reconciler's watch


async def _wait_while(waiter: Store, act: Callable[[], Awaitable[object]], timeout_s: float) -> tuple[bool, float]:
    """``waiter.wait_for_fleet_change(timeout_s)``, with ``act`` run 0.2 s into the wait."""
    return await wait_while(lambda: waiter.wait_for_fleet_change(timeout_s), act, after_s=0.2)


async def test_the_fleet_wait_wakes_when_a_worker_is_left_with_no_job(harness: Harness) -> None:
    """The watch ticks when a worker goes idle (to suspend or drain it when its window ends), not
    on a busy worker's heartbeats, nor on a complete that chains into the next job."""
    worker = harness.twin()
    try:
        await register(worker)
        for text in ("one", "two"):
            await worker.enqueue(request(text=text))
        job = await worker.worker_claim("w1")
        assert job is not None
        assert not await harness.store.wait_for_fleet_change(0.2)  # the watch's first look
        woke, _ = await _wait_while(harness.store, lambda: worker.worker_heartbeat(lease_of(job)), 0.6)
        assert not woke
        chained = await worker.worker_complete(lease_of(job), claim_next=NextClaim(with_bundle=False))
        assert chained.next is not None and chained.next.job is not None
        last = chained.next.job
        assert not await harness.store.wait_for_fleet_change(0.4)  # still busy: nothing to tell
        woke, waited_s = await _wait_while(harness.store, lambda: worker.worker_complete(lease_of(last)), 20)
        assert woke and waited_s < 10
    finally:
        await worker.aclose()


async def test_the_fleet_wait_wakes_when_a_worker_exits(harness: Harness) -> None:
    """The watch parks or destroys an exited worker's machine at once, so it ticks on the exit."""
    worker = harness.twin()
    try:
        await register(worker)
        await harness.advance(1_000)  # it exits a second after it went idle (registered)
        assert not await harness.store.wait_for_fleet_change(0.2)  # the watch's first look
        exit_ = SetWorkerStatusRequest(worker_id="w1", status="stopped", reason="exited")
        woke, waited_s = await _wait_while(harness.store, lambda: worker.fleet_set_worker_status(exit_), 20)
        assert woke and waited_s < 10
    finally:
        await worker.aclose()


# --------------------------------------------------------------------------- reconcile lock and ledger


async def test_one_reconcile_at_a_time_until_the_lock_expires(harness: Harness) -> None:
    store = harness.store
    assert await store.acquire_reconcile_lock("cron", ttl_ms=30_000)
    assert not await store.acquire_reconcile_lock("operator", ttl_ms=30_000)
    assert await store.acquire_reconcile_lock("cron", ttl_ms=30_000)  # renewal by the holder
    await harness.advance(30_000)
    assert await store.acquire_reconcile_lock("operator", ttl_ms=30_000)
    await store.release_reconcile_lock("cron")  # not the holder: no effect
    assert not await store.acquire_reconcile_lock("cron", ttl_ms=30_000)
    await store.release_reconcile_lock("operator")
    assert await store.acquire_reconcile_lock("cron", ttl_ms=30_000)


async def test_the_ledger_records_a_launch_once(harness: Harness) -> None:
    store = harness.store
    now = await store.now_ms()
    first = await store.ledger_record(LaunchRecord(launch_id="L1", provider="fly", requested_at=now))
    again = await store.ledger_record(LaunchRecord(launch_id="L1", provider="fly", requested_at=now + 5))
    assert first == again and first.state == "requested"
    assert await store.ledger_update("L1", "running", machine_id="m-9")
    assert not await store.ledger_update("missing", "gone")
    [open_launch] = await store.ledger_list()
    assert (open_launch.state, open_launch.machine_id) == ("running", "m-9")
    # A warm-pool member stays open while parked, and after it is started again.
    assert await store.ledger_update("L1", "parked", detail="parked")
    assert [r.state for r in await store.ledger_list()] == ["parked"]
    assert await store.ledger_update("L1", "running")
    await store.ledger_update("L1", "gone", detail="destroyed after drain")
    assert await store.ledger_list() == []
    [closed] = await store.ledger_list(include_closed=True)
    assert closed.state == "gone" and closed.machine_id == "m-9" and closed.detail == "destroyed after drain"


async def test_the_snapshot_says_since_when_a_worker_has_been_draining(harness: Harness) -> None:
    store = harness.store
    await register(store)
    registered = await store.now_ms()
    await harness.advance(10_000)
    [view] = (await store.fleet_demand()).workers
    assert view.status_since == registered
    await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id="w1", status="draining", reason="excess"))
    drained_at = await store.now_ms()
    await harness.advance(5_000)
    await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id="w1", status="draining", reason="again"))
    [view] = (await store.fleet_demand()).workers
    assert (view.status, view.status_since) == ("draining", drained_at)
