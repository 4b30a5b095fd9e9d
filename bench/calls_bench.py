"""Store calls per message, and enqueue→claim latency on Convex: the hot path beside upstream's.

A worker's store traffic per message, counted in this run for three patterns, on the embedded
store and on the Convex stand-in. The drivers below do what a worker loop does, jobs aside
(a job takes no time, so there are no heartbeats):

* **upstream**: five calls per message (control check, claim, hydration bundle, history append,
  complete), and when the queue is empty a control check and a claim every 2 s: what the
  agent-factory Node worker does;
* **two calls**: a claim with its bundle, then a complete carrying the history;
* **one call**: a complete carrying the history that claims the next job with its bundle
  (``claimNext``); a claim with its bundle only after the worker found the queue empty;
* **worker loop**: the real worker (``worker.loop.Worker`` with an instant delivery), its calls
  counted through the worker role (:mod:`bench.counted_store`): what the one-call pattern stands
  for, measured rather than written out. Its start (the store check, registering) is left out.

When the queue is empty our patterns wait on the store's wait-for-work signal (SQLite: the
doorbell; Convex: a subscription over ``/api/sync``) with a 1 s safety net, as the worker does.

Two workloads: **busy** (messages queued up front, the worker never waits) and **idle between
messages** (each message is enqueued a random 0.1-0.5 s after the previous one was completed, so
the worker always finds the queue empty first). On SQLite a call is a transaction (a wait's read
of the next due time is one). On Convex the figures are the stand-in's own count of function
executions, HTTP queries and mutations and subscription evaluations alike: what a deployment
bills; the driver's own enqueues are left out.

Enqueue→claim latency (Convex stand-in, idle workload): from the enqueue transaction's time to
the claim's, both the deployment's clock (``enqueuedAt`` of the message; ``now`` of the claim):
waiting on the subscription, polling the readiness query every 1 s (``subscribe=False``), and
upstream's 2 s poll.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import statistics
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

from bench.counted_store import CountedStore
from bench.worker_bench import InstantDelivery
from contracts.convex import ConvexStore
from contracts.convex.standin import StandIn
from contracts.models import (
    AppendRequest,
    ClaimedJob,
    CompleteResult,
    EnqueueRequest,
    HistoryMessage,
    LeaseRef,
    MessagePayload,
    NextClaim,
    WorkerRegistration,
)
from contracts.sqlite import SqliteStore
from worker.config import WorkerConfig
from worker.health import Readiness
from worker.job import JobRunner
from worker.loop import Worker
from worker.metrics import WorkerMetrics
from worker.openclaw.sessions import session_key

UPSTREAM_POLL_S = 2.0
SAFETY_NET_S = 1.0
GAP_S = (0.1, 0.5)
Store = SqliteStore | ConvexStore
Pattern = Callable[["Run"], Coroutine[Any, Any, None]]
T = TypeVar("T")


def _turns(job: ClaimedJob) -> list[HistoryMessage]:
    return [
        HistoryMessage(role="user", content=job.payload.message_text),
        HistoryMessage(role="assistant", content="ok"),
    ]


def _request(i: int) -> EnqueueRequest:
    payload = MessagePayload(provider="app", provider_user_id="bench", message_text=f"message {i}")
    return EnqueueRequest(conversation_id=f"conv-{i % 20}", agent_key="default", payload=payload)


@dataclass
class Run:
    """One worker's run: its store, how many messages it must complete, and what it did."""

    store: Store
    limit: int
    worker_id: str = "bench-worker"
    calls: Counter[str] = field(default_factory=Counter)
    claims: list[tuple[str, int | None]] = field(default_factory=list)  # (message id, claim time)
    completed: int = 0
    progress: anyio.Event = field(default_factory=anyio.Event)

    def done(self) -> None:
        self.completed += 1
        self.progress.set()
        self.progress = anyio.Event()

    async def until_completed(self, count: int) -> None:
        while self.completed < count:
            await self.progress.wait()

    def finished(self) -> bool:
        return len(self.claims) >= self.limit

    async def call(self, name: str, result: Awaitable[T]) -> T:
        self.calls[name] += 1
        return await result

    async def wait(self, timeout_s: float) -> None:
        self.calls["wait"] += 1
        await self.store.wait_for_work(timeout_s)

    def lease(self, job: ClaimedJob) -> LeaseRef:
        self.claims.append((job.message_id, job.now))
        return LeaseRef(worker_id=self.worker_id, message_id=job.message_id, lease_id=job.lease_id)


async def upstream(run: Run) -> None:
    store = run.store
    while not run.finished():
        await run.call("control", store.worker_control_state(run.worker_id))
        job = await run.call("claim", store.worker_claim(run.worker_id))
        if job is None:
            await anyio.sleep(UPSTREAM_POLL_S)
            continue
        lease = run.lease(job)
        await run.call("hydrate", store.worker_hydration_bundle(job.message_id))
        append = AppendRequest(conversation_id=job.conversation_id, messages=_turns(job), message_id=job.message_id)
        await run.call("append", store.worker_append_conversation_messages(append))
        await run.call("complete", store.worker_complete(lease))
        run.done()


async def two_calls(run: Run) -> None:
    store = run.store
    while not run.finished():
        claimed = await run.call("claim", store.worker_claim(run.worker_id, with_bundle=True))
        if claimed.job is None:
            await run.wait(SAFETY_NET_S)
            continue
        lease = run.lease(claimed.job)
        await run.call("complete", store.worker_complete(lease, history=_turns(claimed.job)))
        run.done()


async def one_call(run: Run) -> None:
    store = run.store
    job: ClaimedJob | None = None
    while not run.finished():
        if job is None:
            claimed = await run.call("claim", store.worker_claim(run.worker_id, with_bundle=True))
            job = claimed.job
        if job is None:
            await run.wait(SAFETY_NET_S)
            continue
        lease = run.lease(job)
        last = run.finished()  # the last message of the run claims nothing after it
        after = None if last else NextClaim()
        done = await run.call("complete", store.worker_complete(lease, history=_turns(job), claim_next=after))
        run.done()
        job = None if done.next is None else done.next.job
        if job is None and not last:
            await run.wait(SAFETY_NET_S)  # the complete found the queue empty: no claim to learn that again


PATTERNS: dict[str, Pattern] = {"upstream (5 calls)": upstream, "two calls": two_calls, "one call": one_call}
LOOP = "worker loop"
_LOOP_START = 2  # the worker's start: the store check and its registration


class _Completions:
    """Counts a worker's completes; the driver waits on them without a store call."""

    def __init__(self) -> None:
        self.completed = 0
        self._progress = anyio.Event()

    def __call__(self, _: CompleteResult) -> None:
        self.completed += 1
        self._progress.set()
        self._progress = anyio.Event()

    async def until(self, count: int) -> None:
        while self.completed < count:
            await self._progress.wait()


async def worker_loop(store: Store, writer: Store, workload: str, count: int, rng: random.Random) -> int:
    """The real worker loop through ``workload``; returns its store calls after its start."""
    completions = _Completions()
    counted = CountedStore(store, on_complete=completions)
    metrics = WorkerMetrics()
    runner = JobRunner(delivery=InstantDelivery(), channels={}, session_key=session_key, metrics=metrics)
    if workload == "busy":
        for i in range(count):
            await writer.enqueue(_request(i))
        config = WorkerConfig(worker_id="bench-worker", idle_exit_s=1e-6)  # leaves at the first empty answer
        done = await Worker(config, counted, runner, metrics, Readiness()).run()
        if done.processed != count:
            raise RuntimeError(f"the worker processed {done.processed} of {count} messages ({done.reason})")
        return len(counted.calls) - _LOOP_START
    worker = Worker(WorkerConfig(worker_id="bench-worker", poll_s=SAFETY_NET_S), counted, runner, metrics, Readiness())
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        for i in range(count):
            await anyio.sleep(rng.uniform(*GAP_S))
            await writer.enqueue(_request(i))
            await completions.until(i + 1)
        worker.request_stop()
    return len(counted.calls) - _LOOP_START


# ------------------------------------------------------------------ workloads


async def busy(store: Store, writer: Store, pattern: Pattern, count: int) -> Run:
    for i in range(count):
        await writer.enqueue(_request(i))
    run = Run(store, count)
    await store.worker_register(WorkerRegistration(worker_id=run.worker_id, provider="bench"))  # once, not counted
    await pattern(run)
    return run


async def idle(store: Store, writer: Store, pattern: Pattern, count: int, rng: random.Random) -> Run:
    run = Run(store, count)
    await store.worker_register(WorkerRegistration(worker_id=run.worker_id, provider="bench"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(pattern, run)
        for i in range(count):
            await anyio.sleep(rng.uniform(*GAP_S))
            await writer.enqueue(_request(i))
            await run.until_completed(i + 1)  # no store call: the driver's only calls are its enqueues
    return run


async def _latencies_ms(store: Store, run: Run) -> list[int]:
    out = []
    for message_id, claimed_at in run.claims:
        record = await store.get_message(message_id)
        assert record is not None and claimed_at is not None
        out.append(claimed_at - record.enqueued_at)
    return out


def _pct(values: Sequence[float], q: int) -> float:
    return values[0] if len(values) == 1 else statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# ------------------------------------------------------------------ the two stores


async def sqlite_rows(busy_n: int, idle_n: int, rng: random.Random) -> list[tuple[str, str, float, float]]:
    rows = []
    for name, pattern in PATTERNS.items():
        per_message = []
        for workload in ("busy", "idle"):
            with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp:
                store, writer = SqliteStore(Path(tmp) / "calls.db"), SqliteStore(Path(tmp) / "calls.db")
                if workload == "busy":
                    run = await busy(store, writer, pattern, busy_n)
                else:
                    run = await idle(store, writer, pattern, idle_n, rng)
                per_message.append(run.calls.total() / run.limit)
                await store.aclose()
                await writer.aclose()
        rows.append(("sqlite", name, per_message[0], per_message[1]))
    per_message = []
    for workload, count in (("busy", busy_n), ("idle", idle_n)):
        with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp:
            store, writer = SqliteStore(Path(tmp) / "calls.db"), SqliteStore(Path(tmp) / "calls.db")
            per_message.append(await worker_loop(store, writer, workload, count, rng) / count)
            await store.aclose()
            await writer.aclose()
    rows.append(("sqlite", LOOP, per_message[0], per_message[1]))
    return rows


async def convex_rows(
    standin: StandIn, busy_n: int, idle_n: int, rng: random.Random
) -> tuple[list[tuple[str, str, float, float]], dict[str, list[int]]]:
    rows, latencies = [], {}
    waits = {"upstream (5 calls)": "upstream's 2 s poll", "one call": "subscription (/api/sync)"}
    for name, pattern in PATTERNS.items():
        per_message = []
        for workload in ("busy", "idle"):
            standin.reset(env={"FACTORY_AUTH": "open"})
            store, writer = ConvexStore(standin.url), ConvexStore(standin.url)
            if workload == "busy":
                run = await busy(store, writer, pattern, busy_n)
            else:
                run = await idle(store, writer, pattern, idle_n, rng)
            # Every execution but the driver's enqueues and the worker's one registration, per message.
            per_message.append((sum(standin.calls().values()) - run.limit - 1) / run.limit)
            if workload == "idle" and name in waits:
                latencies[waits[name]] = await _latencies_ms(writer, run)
            await store.aclose()
            await writer.aclose()
        rows.append(("convex stand-in", name, per_message[0], per_message[1]))
    per_message = []
    for workload, count in (("busy", busy_n), ("idle", idle_n)):
        standin.reset(env={"FACTORY_AUTH": "open"})
        store, writer = ConvexStore(standin.url), ConvexStore(standin.url)
        await worker_loop(store, writer, workload, count, rng)
        # Every execution but the driver's enqueues and the worker's start, per message.
        per_message.append((sum(standin.calls().values()) - count - _LOOP_START) / count)
        await store.aclose()
        await writer.aclose()
    rows.append(("convex stand-in", LOOP, per_message[0], per_message[1]))
    standin.reset(env={"FACTORY_AUTH": "open"})
    polling, writer = ConvexStore(standin.url, subscribe=False, wait_poll_s=SAFETY_NET_S), ConvexStore(standin.url)
    run = await idle(polling, writer, one_call, idle_n, rng)
    latencies["readiness poll every 1 s"] = await _latencies_ms(writer, run)
    await polling.aclose()
    await writer.aclose()
    return rows, latencies


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """Warnings only while measuring: the binding logs each call at debug level."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        yield
    finally:
        structlog.configure(**saved)


def run(busy_n: int = 200, idle_n: int = 30, seed: int = 15) -> None:
    rng = random.Random(seed)
    with _quiet_logs():
        rows = anyio.run(sqlite_rows, busy_n, idle_n, rng)
        with StandIn.start(os.environ) as standin:
            convex, latencies = anyio.run(convex_rows, standin, busy_n // 2, idle_n, rng)
    print(f"\nStore calls per message ({busy_n} busy, {idle_n} idle-between messages; Convex: function executions)")
    print(f"{'store':<17}{'pattern':<21}{'busy':>8}{'idle between':>14}")
    for store, pattern, busy_calls, idle_calls in rows + convex:
        print(f"{store:<17}{pattern:<21}{busy_calls:>8.2f}{idle_calls:>14.2f}")
    for store, pattern, busy_calls, _ in rows + convex:
        if pattern != "upstream (5 calls)":
            goal = 2.0 if pattern == "two calls" else 1.5  # one call and the worker loop: with claimNext
            verdict = "meets" if busy_calls <= goal else "MISSES"
            print(f"target {store}, {pattern}, busy: ≤ {goal:g} calls per message → {verdict} ({busy_calls:.2f})")
    print(f"\nEnqueue→claim on the Convex stand-in, idle worker ({idle_n} messages, 0.1-0.5 s apart)")
    for how, values in latencies.items():
        ordered = sorted(values)
        print(f"  {how:<28} p50 {_pct(ordered, 50):>7,.0f} ms   p99 {_pct(ordered, 99):>7,.0f} ms")
