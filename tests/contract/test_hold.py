"""A conversation's memory is on the machine of the worker pinned to it: while that worker holds the
conversation (active, heard from within ``HOLD_MS``), no unpinned worker takes it.

Without the hold, an idle unpinned worker and the conversation's own idle worker race for its next
message, and the winner may answer without the agent's memory. The hold must never starve the
conversation: every worker pinned to it may take it, and a holder that falls silent (suspended, in
an outage, dead) or is drained gives it to anyone.
"""

from __future__ import annotations

import pytest

from contracts.models import NextClaim, SetWorkerStatusRequest, WorkerRegistration
from contracts.rules import HOLD_MS
from tests.contract.conftest import Harness
from tests.contract.helpers import Store, claim_text, lease_of, register, request

pytestmark = pytest.mark.anyio


async def _pin(store: Store, worker_id: str, conversation_id: str) -> None:
    await store.worker_register(
        WorkerRegistration(worker_id=worker_id, provider="local", conversation_id=conversation_id)
    )


async def test_an_unpinned_worker_passes_over_a_conversation_its_pinned_worker_holds(harness: Harness) -> None:
    store = harness.store
    await _pin(store, "holder", "c1")
    await register(store, "spare")
    await store.enqueue(request("c1", "for the holder"))
    await store.enqueue(request("c2", "for anyone"))
    await store.enqueue(request("c3", "for anyone, next"))

    job = await store.worker_claim("spare")
    assert job is not None and job.payload.message_text == "for anyone"  # c1 is older, but held
    # The claim a complete makes next passes over it too.
    done = await store.worker_complete(lease_of(job, "spare"), claim_next=NextClaim())
    assert done.next is not None and done.next.job is not None
    assert done.next.job.payload.message_text == "for anyone, next"
    last = await store.worker_complete(lease_of(done.next.job, "spare"), claim_next=NextClaim())
    assert last.next is not None and last.next.job is None  # only the held one is left

    held = await store.worker_claim("holder", "c1")
    assert held is not None and held.payload.message_text == "for the holder"


async def test_every_worker_pinned_to_the_conversation_may_take_it(harness: Harness) -> None:
    # Two pinned workers (the holder and a launch that pinned itself while it slept): the hold keeps
    # out the unpinned, never one of them, so the one that asks is served.
    store = harness.store
    await _pin(store, "holder", "c1")
    await _pin(store, "second", "c1")
    await register(store, "spare")
    await store.enqueue(request("c1", "hello"))
    assert await store.worker_claim("spare") is None
    assert await claim_text(store, "second") is None  # unpinned claims from "second" are held off too
    job = await store.worker_claim("second", "c1")
    assert job is not None and job.payload.message_text == "hello"


async def test_a_holder_silent_past_the_hold_gives_its_conversation_to_anyone(harness: Harness) -> None:
    store = harness.store
    await _pin(store, "holder", "c1")
    await register(store, "spare")
    await store.enqueue(request("c1", "first"))
    await harness.advance(HOLD_MS - 1_000)
    assert await store.worker_claim("spare") is None  # heard from 29 s ago: still its
    await harness.advance(1_000)
    assert await claim_text(store, "spare") == "first"  # 30 s of silence: suspended, stuck or dead

    # A holder that is heard from again holds again: its idle poll is a heartbeat.
    await store.enqueue(request("c1", "second"))
    assert await store.worker_claim("holder", "c1") is not None
    await store.enqueue(request("c1", "third"))
    assert await store.worker_claim("spare") is None


async def test_a_draining_holder_holds_nothing(harness: Harness) -> None:
    store = harness.store
    await _pin(store, "holder", "c1")
    await register(store, "spare")
    await store.enqueue(request("c1", "hello"))
    assert await store.worker_claim("spare") is None
    await store.fleet_set_worker_status(
        SetWorkerStatusRequest(worker_id="holder", status="draining", reason="scale down")
    )
    assert await claim_text(store, "spare") == "hello"


async def test_the_boot_bundle_names_the_active_workers_pinned_to_the_conversation(harness: Harness) -> None:
    store = harness.store
    await store.enqueue(request("c1", "hello"))
    boot = await store.snapshot_boot("default", "c1")
    assert boot is not None and boot.pinned_workers == []
    await _pin(store, "w2", "c1")
    await _pin(store, "w1", "c1")
    await _pin(store, "elsewhere", "c2")
    await harness.advance(HOLD_MS * 10)  # however long since they were heard from
    boot = await store.snapshot_boot("default", "c1")
    assert boot is not None and boot.pinned_workers == ["w1", "w2"]
    await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id="w2", status="draining", reason="scale down"))
    boot = await store.snapshot_boot("default", "c1")
    assert boot is not None and boot.pinned_workers == ["w1"]
