"""Embedded store throughput, beside a raw SQLite baseline measured in the same run.

For each durability setting (FULL, NORMAL) and 1 and 8 processes:

* baseline: the raw rate of one-row transactions with the same settings, in the shape of the
  queue's work: per message one ``BEGIN IMMEDIATE; INSERT; COMMIT`` and one
  ``BEGIN IMMEDIATE; UPDATE; COMMIT`` (two commits, like claim + complete), through plain
  ``sqlite3`` with no queue logic and no async layer;
* claim+complete: the real ``SqliteStore`` API, two calls per message (``worker_claim``, then
  ``worker_complete``), draining a pre-filled queue spread over 200 conversations;
* complete+claimNext: the hot path, one call per message: each ``worker_complete`` claims the
  worker's next job in the same transaction (``claim_next``; no bundle, so the work per message
  is the same queue work as the two-call path);
* enqueue: ``SqliteStore.enqueue`` from the same number of processes.

Rates are messages per second over the wall time from a shared start signal to the last process
finishing. Each setting runs in rounds (3 by default): a round runs the baseline, then the two queue
paths, each on a fresh file, and a path's ratio is taken against its own round's baseline; the row
shows the medians and the one-call ratio's range, so one burst of load on a shared machine moves
one round, not the figure. After each drain every message must be done: ``lost`` counts those that are not.
Beside them, the CPU time per message (every process's ``process_time``, summed) of the baseline
and of the one-call path: on a loaded machine the wall time is mostly waiting for a core, and
the CPU time is the steadier figure of the work done.

Then the pages each path writes per message (WAL frames appended, one process, NORMAL): the two
calls, the one call, and the one call carrying two history turns and the next job's bundle (what a
worker sends and gets back). The WAL is truncated first and the runs stay under the store's
auto-checkpoint, so the WAL's growth is exactly what the transactions wrote. Each frame names its
page, so the one call's pages are also shown by the table or index they belong to (SQLite's
``dbstat``).

Last, what a commit costs by the pages it writes (plain ``sqlite3``, NORMAL, one process: the CPU
time of ``COMMIT`` after changing 1 and 8 rows a page each), and so how much of the CPU a message
may spend at 40 % of the baseline the one call's commit takes by itself.
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
from statistics import median
from typing import Literal

import anyio

from contracts.models import (
    EnqueueRequest,
    HistoryMessage,
    LeaseRef,
    MessagePayload,
    NextClaim,
    WorkerRegistration,
)
from contracts.sqlite import SqliteStore

Sync = Literal["FULL", "NORMAL"]
Path_ = Literal["claim+complete", "complete+claimNext"]
CONVERSATIONS = 200
PROCESSES = (1, 8)
TURNS = (HistoryMessage(role="user", content="question"), HistoryMessage(role="assistant", content="answer"))


def _request(i: int) -> EnqueueRequest:
    return EnqueueRequest(
        conversation_id=f"conv-{i % CONVERSATIONS}",
        agent_key="default",
        payload=MessagePayload(provider="app", provider_user_id="u", message_text=f"message {i}"),
    )


def _lease(worker: str, message_id: str, lease_id: str) -> LeaseRef:
    return LeaseRef(worker_id=worker, message_id=message_id, lease_id=lease_id)


# ------------------------------------------------------------------ process bodies (top level for spawn)


# What each process reports when it is done: when (perf_counter) and the CPU time it spent.
Done = tuple[float, float]


def _raw(db: str, sync: Sync, count: int, ready: Event, go: Event, out: multiprocessing.Queue[Done]) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    ready.set()
    go.wait()
    cpu = time.process_time()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        row_id = conn.execute("INSERT INTO t (state, body) VALUES ('new', ?)", (f"message {i}",)).lastrowid
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE t SET state = 'done' WHERE id = ?", (row_id,))
        conn.execute("COMMIT")
    out.put((time.perf_counter(), time.process_time() - cpu))
    conn.close()


async def _drain_two_calls(store: SqliteStore, worker: str) -> None:
    while (job := await store.worker_claim(worker)) is not None:
        await store.worker_complete(_lease(worker, job.message_id, job.lease_id))


async def _drain_one_call(store: SqliteStore, worker: str) -> None:
    job = await store.worker_claim(worker)
    after = NextClaim(with_bundle=False)
    while job is not None:
        done = await store.worker_complete(_lease(worker, job.message_id, job.lease_id), claim_next=after)
        job = None if done.next is None else done.next.job


def _drain(
    db: str, sync: Sync, worker: str, path: Path_, ready: Event, go: Event, out: multiprocessing.Queue[Done]
) -> None:
    async def run() -> None:
        store = SqliteStore(db, synchronous=sync)
        await store.worker_register(WorkerRegistration(worker_id=worker, provider="bench"))
        ready.set()
        await anyio.to_thread.run_sync(go.wait)
        cpu = time.process_time()
        await (_drain_two_calls if path == "claim+complete" else _drain_one_call)(store, worker)
        out.put((time.perf_counter(), time.process_time() - cpu))
        await store.aclose()

    anyio.run(run)


def _enqueue(
    db: str, sync: Sync, start: int, count: int, ready: Event, go: Event, out: multiprocessing.Queue[Done]
) -> None:
    async def run() -> None:
        store = SqliteStore(db, synchronous=sync)
        requests = [_request(i) for i in range(start, start + count)]
        ready.set()
        await anyio.to_thread.run_sync(go.wait)
        cpu = time.process_time()
        for request in requests:
            await store.enqueue(request)
        out.put((time.perf_counter(), time.process_time() - cpu))
        await store.aclose()

    anyio.run(run)


# ------------------------------------------------------------------ harness


def _race(targets: list[tuple[Callable[..., None], tuple[object, ...]]]) -> Done:
    """Start every process, release them together; return seconds until the last one finished,
    and the CPU seconds they spent together."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    out: multiprocessing.Queue[Done] = ctx.Queue()
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
    ends = [out.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"bench process failed with exit code {p.exitcode}")
    return max(end for end, _ in ends) - start, sum(cpu for _, cpu in ends)


def _fill(db: Path, count: int) -> None:
    async def run() -> None:
        # Filling is set-up, not measured; NORMAL makes it quick and leaves the same rows.
        store = SqliteStore(db, synchronous="NORMAL")
        for i in range(count):
            await store.enqueue(_request(i))
        await store.aclose()

    anyio.run(run)


def _not_done(db: Path, total: int) -> int:
    async def run() -> int:
        store = SqliteStore(db)
        done = (await store.queue_stats()).done
        await store.aclose()
        return total - done

    return anyio.run(run)


@dataclass(frozen=True)
class Row:
    """One setting's figures: rates are medians over the rounds, and each ratio is the median of
    the rounds' own ratios (a path against the baseline run just before it), with its range."""

    sync: Sync
    processes: int
    rounds: int
    baseline: float
    two_calls: float
    one_call: float
    enqueue: float
    lost: int
    ratio: float
    one_call_ratio: float
    one_call_ratio_range: tuple[float, float]
    # CPU microseconds per message: the baseline's and the one-call path's.
    baseline_cpu_us: float
    one_call_cpu_us: float


def _drain_rate(tmp: Path, sync: Sync, processes: int, total: int, path: Path_) -> tuple[float, float, int]:
    """Messages per second, CPU microseconds per message, and how many were not done."""
    db = tmp / f"{path}.db"
    _fill(db, total)
    seconds, cpu = _race([(_drain, (str(db), sync, f"w{i}", path)) for i in range(processes)])
    return total / seconds, cpu / total * 1e6, _not_done(db, total)


@dataclass(frozen=True)
class _Round:
    raw: float
    raw_cpu_us: float
    two: float
    one: float
    one_cpu_us: float
    lost: int


def _round(tmp: Path, sync: Sync, processes: int, per: int) -> _Round:
    """The baseline, then both queue paths, one after the other on fresh files: a burst of load on
    a shared machine falls on one round's three runs, not on one path across all rounds."""
    total = per * processes
    raw_db = tmp / "raw.db"
    conn = sqlite3.connect(raw_db)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL)")
    conn.close()
    raw_s, raw_cpu = _race([(_raw, (str(raw_db), sync, per)) for _ in range(processes)])
    two, _, lost_two = _drain_rate(tmp, sync, processes, total, "claim+complete")
    one, one_cpu, lost_one = _drain_rate(tmp, sync, processes, total, "complete+claimNext")
    return _Round(total / raw_s, raw_cpu / total * 1e6, two, one, one_cpu, lost_two + lost_one)


def measure(sync: Sync, processes: int, messages: int, rounds: int = 3) -> Row:
    per = messages // processes
    total = per * processes
    done: list[_Round] = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp_name:
            done.append(_round(Path(tmp_name), sync, processes, per))
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp_name:
        enq_db = Path(tmp_name) / "enqueue.db"
        SqliteStore(enq_db, synchronous=sync)  # create and migrate before the race
        enqueue_s, _ = _race([(_enqueue, (str(enq_db), sync, i * per, per)) for i in range(processes)])
    one_ratios = [r.one / r.raw for r in done]
    return Row(
        sync,
        processes,
        rounds,
        baseline=median(r.raw for r in done),
        two_calls=median(r.two for r in done),
        one_call=median(r.one for r in done),
        enqueue=total / enqueue_s,
        lost=sum(r.lost for r in done),
        ratio=median(r.two / r.raw for r in done),
        one_call_ratio=median(one_ratios),
        one_call_ratio_range=(min(one_ratios), max(one_ratios)),
        baseline_cpu_us=median(r.raw_cpu_us for r in done),
        one_call_cpu_us=median(r.one_cpu_us for r in done),
    )


# ------------------------------------------------------------------ pages per message


# A WAL file: a 32-byte header, then frames of a 24-byte header (its page number first) and a page.
_WAL_HEADER, _FRAME_HEADER = 32, 24


def _wal_pages(db: Path, page_size: int) -> list[int]:
    """The page number of every frame in ``db``'s WAL, in order."""
    data = Path(f"{db}-wal").read_bytes()
    step = _FRAME_HEADER + page_size
    return [int.from_bytes(data[at : at + 4], "big") for at in range(_WAL_HEADER, len(data) - step + 1, step)]


def _owners(conn: sqlite3.Connection) -> dict[int, str]:
    """Which table or index each page belongs to; empty where SQLite was built without dbstat."""
    try:
        return {int(page): str(name) for name, page in conn.execute("SELECT name, pageno FROM dbstat")}
    except sqlite3.OperationalError:
        return {}


@dataclass(frozen=True)
class Pages:
    """WAL frames per message on one path, and (for the one call) by the table or index written."""

    per_message: float
    by_owner: dict[str, float]


async def _pages(db: Path, kind: str, count: int) -> Pages:
    store = SqliteStore(db, synchronous="NORMAL")
    await store.worker_register(WorkerRegistration(worker_id="w", provider="bench"))
    first = await store.worker_claim("w", with_bundle=True)
    job = first.job
    side = sqlite3.connect(db)
    page_size = int(side.execute("PRAGMA page_size").fetchone()[0])
    side.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for _ in range(count):
        assert job is not None
        lease = _lease("w", job.message_id, job.lease_id)
        if kind == "claim+complete":
            await store.worker_complete(lease)
            job = await store.worker_claim("w")
        else:
            history, bundle = (TURNS, True) if kind == "with history and bundle" else (None, False)
            done = await store.worker_complete(lease, history=history, claim_next=NextClaim(with_bundle=bundle))
            job = None if done.next is None else done.next.job
    pages = _wal_pages(db, page_size)
    owners = _owners(side)
    side.close()
    await store.aclose()
    by_owner: dict[str, float] = {}
    for page in pages:
        name = owners.get(page, "other")
        by_owner[name] = by_owner.get(name, 0.0) + 1 / count
    return Pages(len(pages) / count, dict(sorted(by_owner.items(), key=lambda item: -item[1])))


def pages_per_message(count: int = 100) -> dict[str, Pages]:
    """WAL frames per message for each path; ``count`` keeps the WAL under its auto-checkpoint."""
    out = {}
    for kind in ("claim+complete", "complete+claimNext", "with history and bundle"):
        with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp:
            db = Path(tmp) / "pages.db"
            _fill(db, 2 * CONVERSATIONS + count)
            out[kind] = anyio.run(_pages, db, kind, count)
    return out


# ------------------------------------------------------------------ what a commit costs


@dataclass(frozen=True)
class CommitCost:
    """CPU microseconds of one NORMAL ``COMMIT``: a fixed part and one per page it writes."""

    fixed_us: float
    per_page_us: float

    def of(self, pages: float) -> float:
        return self.fixed_us + self.per_page_us * pages


def commit_cost(count: int = 2_000, few: int = 1, many: int = 8) -> CommitCost:
    """Fit a commit's CPU time to the pages it writes: ``count`` commits changing ``few`` rows,
    then ``many``, each row alone on its page (plain ``sqlite3``, WAL, NORMAL, one process); the
    medians of the two, through a line."""
    with tempfile.TemporaryDirectory(prefix="factory-bench-") as tmp:
        conn = sqlite3.connect(Path(tmp) / "commit.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, pad TEXT NOT NULL)")
        rows = 4 * many
        conn.execute("BEGIN")
        # 3,000 bytes a row: one row to a 4 KiB page, so k rows changed are k pages written.
        conn.executemany("INSERT INTO t VALUES (?, 0, ?)", [(i, "x" * 3000) for i in range(rows)])
        conn.execute("COMMIT")
        conn.execute(f"PRAGMA wal_autocheckpoint = {2 * count * many}")

        def commits(pages: int) -> float:
            spent = []
            for i in range(count):
                conn.execute("BEGIN IMMEDIATE")
                for j in range(pages):
                    conn.execute("UPDATE t SET n = n + 1 WHERE id = ?", ((i + j * 4) % rows,))
                before = time.thread_time_ns()
                conn.execute("COMMIT")
                spent.append(time.thread_time_ns() - before)
            return median(spent) / 1000

        low, high = commits(few), commits(many)
        conn.close()
    per_page = (high - low) / (many - few)
    return CommitCost(fixed_us=low - per_page * few, per_page_us=per_page)


def run(messages: int = 12_000, rounds: int = 3) -> list[Row]:
    """Every setting, ``rounds`` times. FULL drains a quarter as many messages: each of its commits
    waits for the disk (about 1–3 ms here), and its figure of merit is that nothing is lost."""
    rows = []
    print(
        f"\nEmbedded store: {messages:,} messages at NORMAL, {messages // 4:,} at FULL, over {CONVERSATIONS}"
        f" conversations; {rounds} rounds, each path beside the baseline run just before it; medians"
        " (messages/s), the one-call ratio's range in brackets"
    )
    print(
        f"{'sync':<7}{'procs':>6}{'raw baseline':>14}{'claim+complete':>16}{'ratio':>7}"
        f"{'complete+claimNext':>20}{'ratio':>15}{'enqueue':>9}{'lost':>6}{'CPU µs/msg: raw, one call':>27}"
    )
    for sync in ("FULL", "NORMAL"):
        for processes in PROCESSES:
            row = measure(sync, processes, messages if sync == "NORMAL" else messages // 4, rounds)
            rows.append(row)
            low, high = row.one_call_ratio_range
            spread = f"{row.one_call_ratio:.0%} ({low:.0%}–{high:.0%})"
            print(
                f"{row.sync:<7}{row.processes:>6}{row.baseline:>14,.0f}{row.two_calls:>16,.0f}{row.ratio:>7.0%}"
                f"{row.one_call:>20,.0f}{spread:>15}{row.enqueue:>9,.0f}{row.lost:>6}"
                f"{row.baseline_cpu_us:>19,.0f}, {row.one_call_cpu_us:,.0f}",
                flush=True,
            )
    for row in rows:
        verdict = "meets" if row.lost == 0 and (row.sync == "FULL" or row.one_call_ratio >= 0.4) else "MISSES"
        goal = "nothing lost" if row.sync == "FULL" else "≥40% of baseline, nothing lost"
        print(
            f"target {row.sync} x{row.processes} (one call per message): {goal} → {verdict} ({row.one_call_ratio:.0%})"
        )
    pages = pages_per_message()
    print(
        "pages written per message (WAL frames, 1 process, NORMAL): "
        + ", ".join(f"{k} {v.per_message:.1f}" for k, v in pages.items())
    )
    one = pages["complete+claimNext"]
    if one.by_owner:
        print("  the one call's, by what they hold: " + ", ".join(f"{k} {v:.2f}" for k, v in one.by_owner.items()))
    normal = next((r for r in rows if r.sync == "NORMAL" and r.processes == 1), None)
    if normal is not None:
        cost = commit_cost()
        budget = normal.baseline_cpu_us / 0.4
        commit = cost.of(one.per_message)
        print(
            f"a NORMAL commit (plain sqlite3, 1 process): {cost.fixed_us:.1f} µs + {cost.per_page_us:.1f} µs a page."
            f" At 40 % of the baseline a message may spend {budget:.0f} µs of CPU (1 process); the one call's"
            f" commit of {one.per_message:.1f} pages takes {commit:.0f} µs of it ({commit / budget:.0%}),"
            f" leaving {budget - commit:.0f} µs for its statements and everything around them"
            f" (it spends {normal.one_call_cpu_us - commit:.0f} µs)"
        )
    return rows
