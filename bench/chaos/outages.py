"""(c) Outages that must not burn the queue, at their real length.

* gateway down: 50 messages queued, the gateway stopped for ``gateway_down_s`` (5 minutes) while
  the workers run; then started again;
* wrong token: the gateway restarted with a token the workers do not have, for ``wrong_token_s``;
  then restarted with theirs;
* store refusing connections: workers on a Convex deployment (the module under its stand-in)
  behind a blackout proxy, cut for ``store_down_s`` (60 s) in the middle of the work.

For each: dead letters and attempts spent (none may be), how soon a worker noticed, /readyz from
then until the fix (sampled: every sample must be 503 naming the part that is down), how soon after
the fix the first and the last message are done (the last is the queue's drain time at the
gateway's pace: 50 turns on two workers), workers that exited, and tracebacks in their logs.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.from_thread
import anyio.to_thread
import httpx
from pydantic import SecretStr

from bench.chaos.blackout import Blackout
from bench.chaos.local import WorkerProcesses, local_gateway
from bench.chaos.report import Report
from contracts.convex import ConvexStore
from contracts.convex.standin import StandIn
from contracts.models import EnqueueRequest, MessagePayload, QueueStats
from contracts.sqlite import SqliteStore
from gateway.runtime import GatewayRuntime


@dataclass(frozen=True)
class OutagePlan:
    messages: int = 50
    conversations: int = 10
    workers: int = 2
    gateway_down_s: float = 300.0
    wrong_token_s: float = 60.0
    store_down_s: float = 60.0
    gateway_ready_s: float = 300.0
    settle_timeout_s: float = 600.0


def run_outages(plan: OutagePlan, workdir: Path | None = None) -> list[Report]:
    with tempfile.TemporaryDirectory(prefix="factory-chaos-outages-") as tmp:
        root = workdir or Path(tmp)
        with local_gateway(root, ready_timeout_s=plan.gateway_ready_s) as runtime:
            return [
                _gateway_down(plan, root / "down", runtime),
                _wrong_token(plan, root / "token", runtime),
                anyio.run(_store_down, plan, root / "store", runtime),
            ]


def _requests(plan: OutagePlan, tag: str) -> list[EnqueueRequest]:
    return [
        EnqueueRequest(
            conversation_id=f"{tag}-{i % plan.conversations}",
            agent_key="default",
            payload=MessagePayload(provider="app", provider_user_id="u", message_text=f"{tag} message {i}"),
        )
        for i in range(plan.messages)
    ]


async def _enqueue(db: Path, plan: OutagePlan, tag: str) -> None:
    store = SqliteStore(db)
    for request in _requests(plan, tag):
        await store.enqueue(request)
    await store.aclose()


async def _stats(db: Path) -> QueueStats:
    store = SqliteStore(db)
    try:
        return await store.queue_stats()
    finally:
        await store.aclose()


def _attempts_spent(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(
            conn.execute("SELECT coalesce(sum(attempts - 1), 0) FROM messages WHERE status = 'done'").fetchone()[0]
        )
    finally:
        conn.close()


class _Readyz:
    """Samples every worker's /readyz; remembers whether every sample blamed ``component``.

    A worker learns of a fault only when it next talks to the part that is down (a rotated token
    is news to it until it presents the old one), so each worker's samples count from its own first
    503 blaming the part; how long the first worker took to notice is a figure of its own.
    """

    def __init__(self, workers: WorkerProcesses, component: str) -> None:
        self.ports = [port for _, _, port in workers.running if port is not None]
        self.component = component
        self.started = time.monotonic()
        self.noticed_after: float | None = None
        self.noticing: set[int] = set()  # ports whose worker has said so once
        self.samples = 0
        self.blamed = 0

    def sample(self) -> None:
        with httpx.Client(trust_env=False, timeout=5) as http:
            for port in self.ports:
                try:
                    response = http.get(f"http://127.0.0.1:{port}/readyz")
                except httpx.TransportError:
                    continue  # still starting
                reasons = response.json()["reasons"] if response.status_code == 503 else []
                blamed = any(r.startswith(f"{self.component}:") for r in reasons)
                if blamed and self.noticed_after is None:
                    self.noticed_after = time.monotonic() - self.started
                if blamed:
                    self.noticing.add(port)
                if port in self.noticing:
                    self.samples += 1
                    self.blamed += int(blamed)

    @property
    def figure(self) -> str:
        return f"{self.blamed}/{self.samples} samples 503"

    @property
    def noticed(self) -> str:
        return "never" if self.noticed_after is None else f"{self.noticed_after:.1f} s"


def _wait_out(seconds: float, readyz: _Readyz) -> None:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        readyz.sample()
        # Fast until the fault is noticed (that delay is a figure), then every 2 s.
        pause = 0.25 if readyz.noticed_after is None else 2.0
        time.sleep(min(pause, max(0.0, until - time.monotonic())))


def _drain_times(done: Callable[[], int], total: int, timeout_s: float) -> tuple[float | None, float | None]:
    """Seconds from now until one more message is done, and until all ``total`` are (None: never)."""
    started = time.monotonic()
    at_fix = done()
    first: float | None = None
    while (count := done()) < total:
        if first is None and count > at_fix:
            first = time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return first, None
        time.sleep(0.25)
    everything = time.monotonic() - started
    return (everything if first is None else first), everything


async def _poll(check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    """Until ``check`` holds, or ``timeout_s`` has passed."""
    deadline = anyio.current_time() + timeout_s
    while anyio.current_time() < deadline:
        if await check():
            return
        await anyio.sleep(0.25)


def _done(db: Path) -> Callable[[], int]:
    return lambda: anyio.run(_stats, db).done


def _report(
    name: str,
    plan: OutagePlan,
    stats: QueueStats,
    spent: int,
    readyz: _Readyz,
    drained: tuple[float | None, float | None],
    workers: WorkerProcesses,
    exited: int,
) -> Report:
    report = Report(name)
    report.add("messages", plan.messages)
    report.add("lost", lost := plan.messages - stats.done - stats.dead_letters, bad=lost > 0)
    report.add("dead letters", stats.dead_letters, bad=stats.dead_letters > 0)
    report.add("attempts spent by the outage", spent, bad=spent > 0)
    report.add("fault noticed (first /readyz 503)", readyz.noticed, bad=readyz.noticed_after is None)
    report.add("/readyz 503 from then on", readyz.figure, bad=readyz.samples == 0 or readyz.blamed != readyz.samples)
    for label, seconds in zip(("first done after the fix", "all done after the fix"), drained, strict=True):
        report.add(label, "never" if seconds is None else f"{seconds:.1f} s", bad=seconds is None)
    report.add("workers that exited", exited, bad=exited > 0)
    report.add("worker logs with a traceback", n := workers.tracebacks(), bad=n > 0)
    return report


def _gateway_down(plan: OutagePlan, root: Path, runtime: GatewayRuntime) -> Report:
    root.mkdir(parents=True)
    db = root / "down.db"
    anyio.run(_enqueue, db, plan, "down")
    runtime.stop()
    workers = WorkerProcesses.for_gateway(root, str(db), runtime, health=True)
    workers.start(plan.workers)
    return _ride_out(f"gateway down {plan.gateway_down_s:g} s", plan, db, workers, plan.gateway_down_s, runtime.start)


def _wrong_token(plan: OutagePlan, root: Path, runtime: GatewayRuntime) -> Report:
    root.mkdir(parents=True)
    db = root / "token.db"
    workers = WorkerProcesses.for_gateway(root, str(db), runtime, health=True)
    workers.start(plan.workers)  # they start with the right token: the start-up check passes
    time.sleep(5)
    right = runtime.token
    runtime.stop()
    runtime.token = SecretStr("rotated-" + os.urandom(8).hex())  # an operator rotates it on the gateway only
    runtime.start()
    anyio.run(_enqueue, db, plan, "token")

    def fix() -> None:
        runtime.stop()
        runtime.token = right  # …and puts the workers' token back
        runtime.start()

    return _ride_out(f"wrong token {plan.wrong_token_s:g} s", plan, db, workers, plan.wrong_token_s, fix)


def _ride_out(
    name: str, plan: OutagePlan, db: Path, workers: WorkerProcesses, down_s: float, fix: Callable[[], object]
) -> Report:
    """Sample /readyz for ``down_s``, ``fix`` the gateway, then time the drain and report."""
    readyz = _Readyz(workers, "gateway")
    try:
        _wait_out(down_s, readyz)
        exited = workers.exited()
        fix()
        drained = _drain_times(_done(db), plan.messages, plan.settle_timeout_s)
    finally:
        workers.stop()
    stats, spent = anyio.run(_stats, db), _attempts_spent(db)
    return _report(name, plan, stats, spent, readyz, drained, workers, exited)


async def _store_down(plan: OutagePlan, root: Path, runtime: GatewayRuntime) -> Report:
    await anyio.Path(root).mkdir(parents=True)
    standin = await anyio.to_thread.run_sync(StandIn.start, dict(os.environ))
    try:
        standin.reset(env={"FACTORY_AUTH": "open"})
        store = ConvexStore(standin.url)
        ids = [await store.enqueue(request) for request in _requests(plan, "store")]
        port = int(standin.url.rsplit(":", 1)[1])
        async with anyio.create_task_group() as tg:
            proxy = await tg.start(Blackout(port).serve)
            workers = WorkerProcesses.for_gateway(root, proxy.url, runtime, health=True)
            workers.start(plan.workers)
            readyz = _Readyz(workers, "store")

            async def done_count() -> int:
                return (await store.queue_stats()).done

            def done() -> int:
                return anyio.from_thread.run(done_count)

            async def a_fifth_done() -> bool:
                return await done_count() >= plan.messages // 5

            await _poll(a_fifth_done, plan.settle_timeout_s)
            await proxy.cut()
            await anyio.to_thread.run_sync(_wait_out, plan.store_down_s, readyz)
            exited = workers.exited()
            await proxy.restore()
            drained = await anyio.to_thread.run_sync(_drain_times, done, plan.messages, plan.settle_timeout_s)
            await anyio.to_thread.run_sync(workers.stop)
            tg.cancel_scope.cancel()
        stats = await store.queue_stats()
        records = [await store.get_message(message_id) for message_id in ids]
        spent = sum(r.attempts - 1 for r in records if r is not None and r.status == "done")
        await store.aclose()
    finally:
        await anyio.to_thread.run_sync(standin.stop)
    return _report(f"store refusing {plan.store_down_s:g} s", plan, stats, spent, readyz, drained, workers, exited)
