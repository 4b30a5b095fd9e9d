"""Embedded store throughput, beside a raw SQLite baseline measured in the same run.

For each durability setting (FULL, NORMAL) and 1, 4 and 8 processes:

* baseline: the raw rate of one-row transactions with the same settings, in the shape of the
  queue's work: per message one ``BEGIN IMMEDIATE; INSERT; COMMIT`` and one
  ``BEGIN IMMEDIATE; UPDATE; COMMIT`` (two commits, like claim + complete), through plain
  ``sqlite3`` with no queue logic and no async layer;
* claim+complete: the real ``SqliteStore`` API (async, one thread hop per call), draining a
  pre-filled queue spread over 200 conversations;
* enqueue: ``SqliteStore.enqueue`` from the same number of processes.

Rates are messages per second over the wall time from a shared start signal to the last
process finishing.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Literal

import anyio

from contracts.models import EnqueueRequest, LeaseRef, MessagePayload, WorkerRegistration
from contracts.sqlite import SqliteStore

Sync = Literal["FULL", "NORMAL"]
CONVERSATIONS = 200


def _request(i: int) -> EnqueueRequest:
    return EnqueueRequest(
        conversation_id=f"conv-{i % CONVERSATIONS}",
        agent_key="default",
        payload=MessagePayload(provider="app", provider_user_id="u", message_text=f"message {i}"),
    )


# ------------------------------------------------------------------ process bodies (top level for spawn)


def _raw(db: str, sync: Sync, count: int, ready: Event, go: Event, out: multiprocessing.Queue[float]) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    ready.set()
    go.wait()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        row_id = conn.execute("INSERT INTO t (state, body) VALUES ('new', ?)", (f"message {i}",)).lastrowid
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET state = 'done' WHERE id = ?", (row_id,))
        conn.execute("COMMIT")
    out.put(time.perf_counter())
    conn.close()


def _drain(db: str, sync: Sync, worker: str, ready: Event, go: Event, out: multiprocessing.Queue[float]) -> None:
    async def run() -> None:
        store = SqliteStore(db, synchronous=sync)
        await store.worker_register(WorkerRegistration(worker_id=worker, provider="bench"))
        ready.set()
        await anyio.to_thread.run_sync(go.wait)
        while (job := await store.worker_claim(worker)) is not None:
            await store.worker_complete(LeaseRef(worker_id=worker, message_id=job.message_id, lease_id=job.lease_id))
        out.put(time.perf_counter())
        await store.aclose()

    anyio.run(run)


def _enqueue(
    db: str, sync: Sync, start: int, count: int, ready: Event, go: Event, out: multiprocessing.Queue[float]
) -> None:
    async def run() -> None:
        store = SqliteStore(db, synchronous=sync)
        requests = [_request(i) for i in range(start, start + count)]
        ready.set()
        await anyio.to_thread.run_sync(go.wait)
        for request in requests:
            await store.enqueue(request)
        out.put(time.perf_counter())
        await store.aclose()

    anyio.run(run)


# ------------------------------------------------------------------ harness


def _race(targets: list[tuple[Callable[..., None], tuple[object, ...]]]) -> float:
    """Start every process, release them together, return seconds until the last one finished."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    out: multiprocessing.Queue[float] = ctx.Queue()
    procs, readies = [], []
    for fn, args in targets:
        ready = ctx.Event()
        readies.append(ready)
        procs.append(ctx.Process(target=fn, args=(*args, ready, go, out)))
    for p in procs:
        p.start()
    for ready in readies:
        ready.wait(60)
    start = time.perf_counter()
    go.set()
    ends = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"bench process failed with exit code {p.exitcode}")
    return max(ends) - start


def _fill(db: Path, sync: Sync, count: int) -> None:
    async def run() -> None:
        store = SqliteStore(db, synchronous=sync)
        for i in range(count):
            await store.enqueue(_request(i))
        await store.aclose()

    anyio.run(run)


@dataclass(frozen=True)
class Row:
    sync: Sync
    processes: int
    baseline: float
    claim_complete: float
    enqueue: float

    @property
    def ratio(self) -> float:
        return self.claim_complete / self.baseline


def measure(sync: Sync, processes: int, messages: int) -> Row:
    per = messages // processes
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp:
        raw_db = Path(tmp) / "raw.db"
        conn = sqlite3.connect(raw_db)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL)")
        conn.close()
        raw_s = _race([(_raw, (str(raw_db), sync, per)) for _ in range(processes)])

        enq_db = Path(tmp) / "enqueue.db"
        SqliteStore(enq_db, synchronous=sync)  # create and migrate before the race
        enqueue_s = _race([(_enqueue, (str(enq_db), sync, i * per, per)) for i in range(processes)])

        store_db = Path(tmp) / "store.db"
        # Filling is set-up, not measured; NORMAL makes it quick and leaves the same rows.
        _fill(store_db, "NORMAL", per * processes)
        drain_s = _race([(_drain, (str(store_db), sync, f"w{i}")) for i in range(processes)])
    total = per * processes
    return Row(sync, processes, total / raw_s, total / drain_s, total / enqueue_s)


def run(messages: int = 12_000) -> list[Row]:
    rows = []
    print(f"\nEmbedded store: {messages} messages over {CONVERSATIONS} conversations per run (messages/s)")
    print(f"{'sync':<7}{'procs':>6}{'raw baseline':>15}{'claim+complete':>16}{'ratio':>8}{'enqueue':>10}")
    for sync in ("FULL", "NORMAL"):
        for processes in (1, 4, 8):
            row = measure(sync, processes, messages)
            rows.append(row)
            print(
                f"{row.sync:<7}{row.processes:>6}{row.baseline:>15,.0f}{row.claim_complete:>16,.0f}"
                f"{row.ratio:>7.0%}{row.enqueue:>10,.0f}",
                flush=True,
            )
    targets = {"FULL": 2_000, "NORMAL": 5_000}
    for row in rows:
        if row.processes == 8:
            verdict = "meets" if row.claim_complete >= targets[row.sync] and row.ratio >= 0.4 else "MISSES"
            print(
                f"target {row.sync} x8: ≥{targets[row.sync]:,}/s and ≥40% of baseline → {verdict} "
                f"({row.claim_complete:,.0f}/s, {row.ratio:.0%})"
            )
    return rows
