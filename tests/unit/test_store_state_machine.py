"""A Hypothesis state machine drives the real SQLite store against a plain in-memory model.

After every step it checks: at most one live lease per conversation; a claim only ever takes a
conversation's head (FIFO); a stale or expired lease changes nothing; no message is lost (each
is queued, processing, done or dead_letter, exactly as the model says); attempts never exceed
maxAttempts. Claims go through both paths: the plain claim and complete, and the hot path (a
claim with its bundle; a complete that carries history and claims the worker's next job, whose
replay hands back the same job).
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.from_thread
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from contracts.clock import ManualClock
from contracts.models import (
    ClaimedJob,
    EnqueueRequest,
    FailRequest,
    FailResult,
    HistoryMessage,
    LeaseRef,
    MessagePayload,
    NextClaim,
    ReleaseRequest,
    WorkerRegistration,
)
from contracts.sqlite import SqliteStore

T = TypeVar("T")
LEASE_TTL_MS = 60_000
WORKERS = ("w1", "w2", "w3")
CONVERSATIONS = ("a", "b", "c")


@dataclass
class Msg:
    message_id: str
    conversation: str
    seq: int
    priority: int
    max_attempts: int
    scheduled_for: int
    status: str = "queued"
    attempts: int = 0
    lease: str | None = None
    worker: str | None = None
    expires: int | None = None
    settled_lease: str | None = None  # the lease that completed or failed it, for replays
    fail_result: FailResult | None = None
    chained: str | None = None  # the message its complete claimed next for the same worker
    superseded: str | None = None  # the last lease that expired (taken over or swept), not ended


@dataclass
class Lease:
    worker: str
    message_id: str
    lease_id: str


@dataclass
class Model:
    now: int
    messages: dict[str, Msg] = field(default_factory=dict)
    seq: int = 0

    def head(self, conversation: str) -> Msg | None:
        open_ = [m for m in self.messages.values() if m.conversation == conversation and m.status in _OPEN]
        processing = [m for m in open_ if m.status == "processing"]
        if processing:
            return processing[0]
        return min(open_, key=lambda m: m.seq, default=None)

    def owns(self, lease: Lease) -> Msg | None:
        m = self.messages[lease.message_id]
        live = m.expires is not None and self.now < m.expires
        if m.status == "processing" and m.lease == lease.lease_id and m.worker == lease.worker and live:
            return m
        return None

    def predict_claim(self) -> Msg | None:
        """Apply the claim rule, dead-lettering exhausted expired heads on the way."""
        while True:
            due = []
            for conv in CONVERSATIONS:
                m = self.head(conv)
                if m is None:
                    continue
                available = m.expires if m.status == "processing" else m.scheduled_for
                assert available is not None
                if available <= self.now:
                    due.append(m)
            if not due:
                return None
            # Priority, then claimable longest (a processing head: since its lease expired), then seq.
            best = min(
                due, key=lambda m: (-m.priority, m.expires if m.status == "processing" else m.scheduled_for, m.seq)
            )
            if best.status == "processing" and best.attempts >= best.max_attempts:
                best.status, best.lease, best.expires = "dead_letter", None, None
                continue
            return best


_OPEN = ("queued", "processing")


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="factory-sm-"))
        self.clock = ManualClock()
        self.portal_cm = anyio.from_thread.start_blocking_portal("asyncio")
        self.portal = self.portal_cm.__enter__()
        self.store = SqliteStore(
            self.dir / "sm.db", synchronous="NORMAL", clock=self.clock, rng=random.Random(0), lease_ttl_ms=LEASE_TTL_MS
        )
        self.model = Model(now=self.clock.now_ms())
        self.leases: list[Lease] = []
        for worker in WORKERS:
            self.call(partial(self.store.worker_register, WorkerRegistration(worker_id=worker, provider="test")))

    def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return self.portal.call(fn)

    def teardown(self) -> None:
        self.call(self.store.aclose)
        self.portal_cm.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ rules

    @rule(
        conversation=st.sampled_from(CONVERSATIONS),
        priority=st.sampled_from([10, 50, 90]),
        cap=st.integers(1, 3),
    )
    def enqueue(self, conversation: str, priority: int, cap: int) -> None:
        self.model.seq += 1
        text = f"{conversation}-{self.model.seq}"
        request = EnqueueRequest(
            conversation_id=conversation,
            agent_key="default",
            payload=MessagePayload(provider="app", provider_user_id="u", message_text=text),
            priority=priority,
            max_attempts=cap,
        )
        message_id = self.call(lambda: self.store.enqueue(request))
        self.model.messages[message_id] = Msg(
            message_id, conversation, self.model.seq, priority, cap, scheduled_for=self.model.now
        )

    @rule(worker=st.sampled_from(WORKERS), with_bundle=st.booleans())
    def claim(self, worker: str, with_bundle: bool) -> None:
        expected = self.model.predict_claim()
        job: ClaimedJob | None
        if with_bundle:
            answer = self.call(lambda: self.store.worker_claim(worker, with_bundle=True))
            assert not answer.control.should_stop and answer.now == self.model.now
            job = answer.job
            assert (answer.bundle is None) == (job is None)
            assert job is None or (answer.bundle is not None and answer.bundle.message_id == job.message_id)
        else:
            job = self.call(lambda: self.store.worker_claim(worker))
        self._claimed(worker, expected, job)

    def _claimed(self, worker: str, expected: Msg | None, job: ClaimedJob | None) -> None:
        if expected is None:
            assert job is None
            return
        assert job is not None, f"model expected {expected.message_id}"
        assert job.message_id == expected.message_id
        m = expected
        if m.status == "queued":
            # FIFO: a fresh delivery is always the earliest open message of its conversation. (Taking
            # over an expired lease re-delivers the message already in flight, even if a redriven
            # older message waits behind it: the redriven one waits for the in-flight one to settle.)
            assert all(
                o.seq > m.seq or o.status not in _OPEN or o is m
                for o in self.model.messages.values()
                if o.conversation == m.conversation
            )
        if m.status == "processing":  # taking over an expired lease
            m.superseded = m.lease
        m.status, m.attempts, m.lease, m.worker = "processing", m.attempts + 1, job.lease_id, worker
        # A new delivery ends the old one: a late replay of its fail no longer reports the old outcome.
        m.settled_lease, m.fail_result = None, None
        m.expires = self.model.now + LEASE_TTL_MS
        assert job.attempt == m.attempts and job.lease_expires_at == m.expires
        self.leases.append(Lease(worker, job.message_id, job.lease_id))

    @precondition(lambda self: bool(self.leases))
    @rule(pick=st.integers(0, 10_000))
    def heartbeat(self, pick: int) -> None:
        lease = self.leases[pick % len(self.leases)]
        owned = self.model.owns(lease)
        before = self._snapshot()
        answer = self.call(lambda: self.store.worker_heartbeat(self._ref(lease)))
        assert answer.ok == (owned is not None)
        assert (answer.refused is None) == answer.ok
        if owned is not None:
            owned.expires = self.model.now + LEASE_TTL_MS
            assert answer.lease_expires_at == owned.expires
        else:
            assert self._snapshot() == before

    @precondition(lambda self: bool(self.leases))
    @rule(pick=st.integers(0, 10_000))
    def complete(self, pick: int) -> None:
        lease = self.leases[pick % len(self.leases)]
        m = self.model.messages[lease.message_id]
        owned = self.model.owns(lease)
        replay = m.status == "done" and m.settled_lease == lease.lease_id and m.worker == lease.worker
        before = self._snapshot()
        answer = self.call(lambda: self.store.worker_complete(self._ref(lease)))
        assert answer.ok == (owned is not None or replay)
        if owned is not None:
            m.status, m.expires, m.settled_lease = "done", None, lease.lease_id
        else:
            assert self._snapshot() == before

    @precondition(lambda self: bool(self.leases))
    @rule(pick=st.integers(0, 10_000), with_history=st.booleans())
    def complete_and_claim_next(self, pick: int, with_history: bool) -> None:
        lease = self.leases[pick % len(self.leases)]
        m = self.model.messages[lease.message_id]
        owned = self.model.owns(lease)
        replay = m.status == "done" and m.settled_lease == lease.lease_id and m.worker == lease.worker
        turns = [HistoryMessage(role="user", content="q"), HistoryMessage(role="assistant", content="a")]
        before = self._snapshot()
        if owned is not None:
            m.status, m.expires, m.settled_lease, m.chained = "done", None, lease.lease_id, None
        chained = self.model.messages.get(m.chained or "")
        # A replay hands back the job its first try claimed while this worker still holds it.
        held = chained is not None and self.model.owns(Lease(lease.worker, chained.message_id, chained.lease or ""))
        again = replay and held
        expected = chained if again else (self.model.predict_claim() if owned or replay else None)
        answer = self.call(
            lambda: self.store.worker_complete(
                self._ref(lease), history=turns if with_history else None, claim_next=NextClaim()
            )
        )
        assert answer.ok == (owned is not None or replay)
        assert answer.next is not None
        if not answer.ok:
            assert answer.next.job is None
            assert self._snapshot() == before
            return
        job = answer.next.job
        if again:
            assert chained is not None and job is not None
            assert (job.message_id, job.lease_id) == (chained.message_id, chained.lease)
            return
        self._claimed(lease.worker, expected, job)
        if job is not None:
            m.chained = job.message_id

    @precondition(lambda self: bool(self.leases))
    @rule(pick=st.integers(0, 10_000), retryable=st.booleans())
    def fail(self, pick: int, retryable: bool) -> None:
        lease = self.leases[pick % len(self.leases)]
        m = self.model.messages[lease.message_id]
        owned = self.model.owns(lease)
        request = FailRequest(lease=self._ref(lease), error_message="boom", retryable=retryable)
        before = self._snapshot()
        result = self.call(lambda: self.store.worker_fail(request))
        if owned is None:
            replay = m.settled_lease == lease.lease_id and m.worker == lease.worker and m.status != "processing"
            if replay and m.fail_result is not None and m.status in ("queued", "dead_letter"):
                assert result == m.fail_result
            else:
                assert (result.requeued, result.dead_lettered) == (False, False)
                assert result.refused in ("lease_lost", "lease_expired")
            assert self._snapshot() == before
            return
        m.settled_lease, m.expires, m.fail_result = lease.lease_id, None, result
        if not retryable or m.attempts >= m.max_attempts:
            assert result.dead_lettered and not result.requeued
            m.status = "dead_letter"
        else:
            assert result.requeued and result.next_scheduled_for is not None
            delay = result.next_scheduled_for - self.model.now
            base = min(120_000, 1_000 * 2 ** (m.attempts - 1))
            assert base <= delay <= min(120_000, base * 1.1 + 1)
            m.status, m.scheduled_for = "queued", result.next_scheduled_for

    @precondition(lambda self: bool(self.leases))
    @rule(pick=st.integers(0, 10_000))
    def release(self, pick: int) -> None:
        lease = self.leases[pick % len(self.leases)]
        m = self.model.messages[lease.message_id]
        ours = m.lease == lease.lease_id and m.worker == lease.worker
        before = self._snapshot()
        answer = self.call(lambda: self.store.worker_release(ReleaseRequest(lease=self._ref(lease), reason="down")))
        if ours and m.status == "processing":
            # Expired or not: nobody took it over, so it is still this lease's to give back.
            assert answer.ok
            m.status, m.attempts, m.expires, m.settled_lease = "queued", max(0, m.attempts - 1), None, lease.lease_id
            m.fail_result = FailResult(requeued=True, dead_lettered=False, next_scheduled_for=m.scheduled_for)
            return
        assert answer.ok == (ours and m.status == "queued")
        assert answer.ok or answer.refused == "lease_lost"
        if not answer.ok and m.superseded == lease.lease_id and m.status in _OPEN:
            # Taken over or swept while its worker could not reach the store: its attempt comes back.
            m.attempts, m.superseded = max(0, m.attempts - 1), None
            return
        assert self._snapshot() == before

    @rule(ms=st.sampled_from([1, 500, 1_000, 5_000, 20_000, 59_999, 60_000, 61_000]))
    def advance(self, ms: int) -> None:
        self.clock.advance(ms)
        self.model.now += ms

    @rule()
    def sweep(self) -> None:
        result = self.call(self.store.release_expired)
        released = dead = 0
        for m in self.model.messages.values():
            if m.status == "processing" and m.expires is not None and m.expires <= self.model.now:
                if m.attempts >= m.max_attempts:
                    m.status, dead = "dead_letter", dead + 1
                else:
                    # Claimable since its lease expired: the sweep moves nobody's place.
                    m.status, m.scheduled_for, released = "queued", m.expires, released + 1
                    m.superseded = m.lease
                m.lease = m.expires = m.settled_lease = None
                m.fail_result = None
        assert (result.released, result.dead_lettered) == (released, dead)

    @rule(pick=st.integers(0, 10_000), everything=st.booleans())
    def redrive(self, pick: int, everything: bool) -> None:
        dead = sorted((m for m in self.model.messages.values() if m.status == "dead_letter"), key=lambda m: m.seq)
        target = None if everything or not dead else dead[pick % len(dead)].message_id
        result = self.call(lambda: self.store.redrive(target))
        chosen = dead if target is None else [m for m in dead if m.message_id == target]
        assert sorted(result.redriven) == sorted(m.message_id for m in chosen)
        for m in chosen:
            m.status, m.attempts, m.scheduled_for = "queued", 0, self.model.now
            m.lease = m.worker = m.expires = m.settled_lease = None
            m.fail_result = None

    # ------------------------------------------------------------------ invariants

    @invariant()
    def nothing_lost_and_states_agree(self) -> None:
        for message_id, m in self.model.messages.items():
            record = self.call(partial(self.store.get_message, message_id))
            assert record is not None, f"{message_id} lost"
            assert record.status == m.status
            assert record.attempts == m.attempts <= m.max_attempts

    @invariant()
    def at_most_one_live_lease_per_conversation(self) -> None:
        live: dict[str, int] = {}
        for m in self.model.messages.values():
            if m.status == "processing" and m.expires is not None and self.model.now < m.expires:
                live[m.conversation] = live.get(m.conversation, 0) + 1
        assert all(count <= 1 for count in live.values())
        stats = self.call(self.store.queue_stats)
        assert stats.inflight_conversations == len(live)
        assert stats.queued + stats.processing + stats.done + stats.dead_letters == len(self.model.messages)

    # ------------------------------------------------------------------ helpers

    def _ref(self, lease: Lease) -> LeaseRef:
        return LeaseRef(worker_id=lease.worker, message_id=lease.message_id, lease_id=lease.lease_id)

    def _snapshot(self) -> list[Any]:
        records = [self.call(partial(self.store.get_message, mid)) for mid in self.model.messages]
        return [r.model_dump() if r else None for r in records]


StoreMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestStoreStateMachine = StoreMachine.TestCase
