"""The worker's memory without a gateway: snapshots through the real store, seeding, when a worker snapshots.

The gateway is replaced by a recording Delivery (the seam the worker talks to), so these tests
pin down the worker's decisions; the real gateway round trip is tests/worker/test_memory_machines.py.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from contracts.clock import ManualClock
from contracts.models import BootBundle, SetWorkerStatusRequest, WorkerRegistration
from contracts.rules import HOLD_MS
from contracts.sqlite import SqliteStore
from factory.cmd_worker import record_exit, worker_config
from factory.settings import WorkerSettings
from gateway.history import OPEN, split_history
from gateway.snapshots import AGENT_DB, Limits
from tests.worker.harness import eventually, message
from worker.config import WorkerConfig
from worker.delivery import DeliveryReply, DeliveryRequest
from worker.health import Readiness
from worker.job import JobRunner
from worker.loop import Worker, WorkerExit
from worker.memory import AgentMemory
from worker.metrics import WorkerMetrics
from worker.openclaw.sessions import session_key

pytestmark = pytest.mark.anyio
SECRET = "gateway-token-0123456789"


class RecordingGateway:
    """The Delivery and SessionProbe seams: answers every turn, remembers the sessions it has seen."""

    def __init__(self, known: set[str] | None = None, *, cannot_tell: bool = False) -> None:
        self.requests: list[DeliveryRequest] = []
        self.known = set() if known is None else known
        self.cannot_tell = cannot_tell
        self.answered = anyio.Event()

    async def deliver(self, request: DeliveryRequest) -> DeliveryReply:
        self.requests.append(request)
        self.known.add(request.session_key)
        self.answered.set()
        return DeliveryReply(text=f"echo: {split_history(request.text)[1]}")

    async def has_session(self, agent_id: str, session_key: str) -> bool | None:
        return None if self.cannot_tell else session_key in self.known

    async def probe(self, agent_id: str | None = None) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db", clock=ManualClock(), rng=random.Random(3))
    try:
        yield s
    finally:
        await s.aclose()


def state_dir(root: Path, remember: str = "the blue door") -> Path:
    db = root / "agents" / "main" / "agent" / AGENT_DB
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE turns (text TEXT)")
    conn.execute("INSERT INTO turns VALUES (?)", (remember,))
    conn.commit()
    conn.close()
    (root / "workspaces" / "main").mkdir(parents=True)
    (root / "workspaces" / "main" / "MEMORY.md").write_text(f"- {remember}")
    return root


def memory(store: SqliteStore, state: Path, worker_id: str = "w1", **kw: object) -> AgentMemory:
    return AgentMemory(store=store, state_dir=state, worker_id=worker_id, metrics=WorkerMetrics(), **kw)  # type: ignore[arg-type]


async def boot_of(store: SqliteStore, conversation: str = "c1") -> BootBundle:
    boot = await store.snapshot_boot("default", conversation)
    assert boot is not None
    return boot


async def test_a_snapshot_restores_on_a_fresh_machine_and_a_busy_one_is_left_alone(
    store: SqliteStore, tmp_path: Path
) -> None:
    await store.enqueue(message("c1", "hello"))
    taken = await memory(store, state_dir(tmp_path / "a")).snapshot("default", "main", "c1", "drain")
    assert taken.status == "ready" and taken.size_bytes > 0

    fresh = tmp_path / "b"
    restored = await memory(store, fresh).restore(await boot_of(store))
    assert (restored.status, restored.snapshot_id) == ("restored", taken.snapshot_id)
    assert (fresh / "workspaces" / "main" / "MEMORY.md").read_text() == "- the blue door"
    busy = state_dir(tmp_path / "c", remember="something else")
    assert (await memory(store, busy).restore(await boot_of(store))).status == "skipped"
    assert (busy / "workspaces" / "main" / "MEMORY.md").read_text() == "- something else"


async def test_a_corrupt_snapshot_is_refused_reported_and_counted(store: SqliteStore, tmp_path: Path) -> None:
    await store.enqueue(message("c1", "hello"))
    taken = await memory(store, state_dir(tmp_path / "a")).snapshot("default", "main", "c1", "idle")
    boot = await boot_of(store)
    assert boot.snapshot is not None
    blob = store.blobs.path(boot.snapshot.sha256)
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    fresh = memory(store, tmp_path / "b", worker_id="w-new")
    outcome = await fresh.restore(boot)
    assert outcome.status == "corrupt" and "sha256" in outcome.detail
    assert not (tmp_path / "b" / "agents").exists()
    [row] = await store.snapshot_list("c1")
    assert row.snapshot_id == taken.snapshot_id and row.status == "failed" and "w-new" in (row.error or "")
    assert fresh.metrics is not None
    assert fresh.metrics.registry.get_sample_value("factory_worker_restores_total", {"outcome": "corrupt"}) == 1
    assert (await boot_of(store)).snapshot is None  # never offered again


async def test_a_missing_archive_is_an_outage_not_a_corrupt_snapshot(store: SqliteStore, tmp_path: Path) -> None:
    await store.enqueue(message("c1", "hello"))
    await memory(store, state_dir(tmp_path / "a")).snapshot("default", "main", "c1", "drain")
    boot = await boot_of(store)
    assert boot.snapshot is not None
    store.blobs.path(boot.snapshot.sha256).unlink()
    assert (await memory(store, tmp_path / "b").restore(boot)).status == "failed"
    assert (await store.snapshot_list("c1"))[0].status == "ready"  # not blamed on the archive


async def test_state_holding_a_credential_or_too_big_is_refused_and_recorded(
    store: SqliteStore, tmp_path: Path
) -> None:
    state = state_dir(tmp_path / "a")
    (state / "workspaces" / "main" / "notes.md").write_text(f"the token is {SECRET}")
    refused = await memory(store, state, secrets=[SECRET]).snapshot("default", "main", "c1", "drain")
    assert refused.status == "refused" and SECRET not in refused.detail
    too_big = await memory(store, state, limits=Limits(max_bytes=10)).snapshot("default", "main", "c1", "drain")
    assert too_big.status == "refused"
    assert [r.status for r in await store.snapshot_list("c1")] == ["failed", "failed"]


async def _runner(store: SqliteStore, gateway: RecordingGateway, metrics: WorkerMetrics) -> JobRunner:
    return JobRunner(
        delivery=gateway,
        channels={},
        session_key=session_key,
        metrics=metrics,
        sessions=gateway,
    )


async def test_a_session_the_gateway_lacks_is_seeded_from_history_once(store: SqliteStore) -> None:
    await store.enqueue(message("c1", "first, MARK-1"))
    await store.enqueue(message("c1", "second"))
    await store.enqueue(message("c1", "third"))
    metrics = WorkerMetrics()
    old = RecordingGateway()
    worker = Worker(
        WorkerConfig(worker_id="w1", once=True), store, await _runner(store, old, metrics), metrics, Readiness()
    )
    await worker.run()  # the first turn, on an old machine: no history yet, nothing to seed
    assert OPEN not in old.requests[0].text

    moved = RecordingGateway()  # a new machine: its gateway has never seen the conversation
    runner = await _runner(store, moved, metrics)
    for _ in range(2):
        await Worker(WorkerConfig(worker_id="w2", once=True), store, runner, metrics, Readiness()).run()
    seeded, rest = split_history(moved.requests[0].text)
    assert seeded == [("user", "first, MARK-1"), ("assistant", "echo: first, MARK-1")] and rest == "second"
    assert moved.requests[1].text == "third"  # the session exists now: never seeded twice
    assert metrics.registry.get_sample_value("factory_worker_seeded_sessions_total") == 1
    conv = await store.get_conversation("c1")
    assert conv is not None and [m.content for m in conv.history][2:4] == ["second", "echo: second"]


async def test_a_gateway_that_cannot_tell_is_not_seeded(store: SqliteStore) -> None:
    await store.enqueue(message("c1", "one"))
    await store.enqueue(message("c1", "two"))
    metrics = WorkerMetrics()
    blind = RecordingGateway(cannot_tell=True)
    runner = await _runner(store, blind, metrics)
    for _ in range(2):
        await Worker(WorkerConfig(worker_id="w1", once=True), store, runner, metrics, Readiness()).run()
    assert [r.text for r in blind.requests] == ["one", "two"]


@pytest.mark.parametrize(("how", "reason"), [("idle", "idle"), ("drain", "drain"), ("signal", "signal")])
async def test_a_pinned_worker_snapshots_when_it_stops_for_good(
    store: SqliteStore, tmp_path: Path, how: str, reason: str
) -> None:
    await store.enqueue(message("c1", "hello"))
    metrics = WorkerMetrics()
    gateway = RecordingGateway()
    mem = memory(store, state_dir(tmp_path / "a"), worker_id="w1")
    idle_exit_s = 0.2 if how == "idle" else None
    config = WorkerConfig(
        worker_id="w1", conversation_id="c1", poll_s=0.05, idle_exit_s=idle_exit_s, snapshot_when_idle=False
    )
    worker = Worker(config, store, await _runner(store, gateway, metrics), metrics, Readiness(), mem)
    async with anyio.create_task_group() as tg:

        async def stop_after_the_job() -> None:
            await gateway.answered.wait()
            await anyio.sleep(0.1)  # the job settles
            if how == "drain":
                await store.fleet_set_worker_status(
                    SetWorkerStatusRequest(worker_id="w1", status="draining", reason="x")
                )
            elif how == "signal":
                worker.request_stop()

        tg.start_soon(stop_after_the_job)
        exit_ = await worker.run()
    assert exit_.snapshot is not None and exit_.snapshot.status == "ready"
    [row] = await store.snapshot_list("c1")
    assert (row.reason, row.status) == (reason, "ready")
    if how == "drain":  # the final snapshot moved the drained worker on to stopping
        assert (await store.list_workers())[0].status == "stopping"


class NoteTakingGateway(RecordingGateway):
    """Answers like RecordingGateway, and notes each message in the agent's MEMORY.md, as an agent
    that remembers would."""

    def __init__(self, state: Path) -> None:
        super().__init__()
        self.notes = state / "workspaces" / "main" / "MEMORY.md"

    async def deliver(self, request: DeliveryRequest) -> DeliveryReply:
        self.notes.write_text(self.notes.read_text() + f"\n- {split_history(request.text)[1]}")
        return await super().deliver(request)


async def test_a_pinned_worker_snapshots_each_time_it_runs_out_of_work(store: SqliteStore, tmp_path: Path) -> None:
    """Not only as it stops: a machine lost while it sleeps (a resume that boots afresh, a crash)
    would otherwise take every turn since its boot with it. Once per quiet spell, and a stop with
    nothing new to save takes none."""
    state = state_dir(tmp_path / "a")
    gateway, metrics = NoteTakingGateway(state), WorkerMetrics()
    config = WorkerConfig(worker_id="w1", conversation_id="c1", poll_s=0.05)
    worker = Worker(config, store, await _runner(store, gateway, metrics), metrics, Readiness(), memory(store, state))

    async def snapshots(count: int) -> None:
        async def taken() -> bool:
            return len([r for r in await store.snapshot_list("c1") if r.status == "ready"]) >= count

        await eventually(taken, timeout_s=10, what=f"{count} ready snapshot(s)")

    async with anyio.create_task_group() as tg:
        exits: list[WorkerExit] = []

        async def run() -> None:
            exits.append(await worker.run())

        tg.start_soon(run)
        await store.enqueue(message("c1", "one"))
        await snapshots(1)
        await store.enqueue(message("c1", "two"))
        await snapshots(2)
        await anyio.sleep(0.3)  # six idle polls
        worker.request_stop()
    assert [(r.reason, r.status) for r in await store.snapshot_list("c1")] == [("idle", "ready")] * 2
    assert exits[0].processed == 2 and exits[0].snapshot is None  # nothing new to save at the stop

    fresh = tmp_path / "b"  # the machine that boots afresh
    assert (await memory(store, fresh).restore(await boot_of(store))).status == "restored"
    assert (fresh / "workspaces" / "main" / "MEMORY.md").read_text() == "- the blue door\n- one\n- two"


async def test_no_snapshot_without_a_pin_after_once_or_without_work(store: SqliteStore, tmp_path: Path) -> None:
    metrics = WorkerMetrics()
    gateway = RecordingGateway()
    mem = memory(store, state_dir(tmp_path / "a"))
    idle_pinned = WorkerConfig(worker_id="w1", conversation_id="c1", poll_s=0.05, idle_exit_s=0.1)
    nothing = await Worker(idle_pinned, store, await _runner(store, gateway, metrics), metrics, Readiness(), mem).run()
    assert (nothing.reason, nothing.snapshot) == ("idle", None)
    await store.enqueue(message("c2", "hello"))
    once = WorkerConfig(worker_id="w2", conversation_id="c2", once=True)
    assert (
        await Worker(once, store, await _runner(store, gateway, metrics), metrics, Readiness(), mem).run()
    ).snapshot is None
    await store.enqueue(message("c3", "hello"))
    unpinned = WorkerConfig(worker_id="w3", poll_s=0.05, idle_exit_s=0.1)
    done = await Worker(unpinned, store, await _runner(store, gateway, metrics), metrics, Readiness(), mem).run()
    assert done.processed == 1 and done.snapshot is None
    assert await store.snapshot_list() == []


async def test_a_sticky_worker_pins_itself_to_its_first_conversation_and_snapshots_it(
    store: SqliteStore, tmp_path: Path
) -> None:
    """A worker launched unpinned and sticky (a warm-pool start, a spare) keeps the memory of the
    conversation it took first: it takes no other, the fleet sees it pinned, and it snapshots that
    conversation when it stops. A conversation whose memory is in a snapshot already does not pin
    it: this gateway never restored that snapshot, and its own would supersede it with less."""
    await store.enqueue(message("c1", "first"))
    await store.enqueue(message("c2", "other"))
    run = _StickyRun(store, tmp_path)
    assert await run("w1") == ("c1", ["first"])  # c2 waits for a worker of its own
    [row] = await store.snapshot_list("c1")
    assert (row.reason, row.status) == ("idle", "ready")
    assert await run("w2") == ("c2", ["other"])

    await store.enqueue(message("c1", "back again"))
    await store.enqueue(message("c3", "new one"))
    # c1's memory is in its snapshot: w3 answers it unpinned (from the history window, as before)
    # and stays free for c3, which then pins it.
    assert await run("w3") == ("c3", ["back again", "new one"])
    assert [r.worker_id for r in await store.snapshot_list("c1")] == ["w1"]


class _StickyRun:
    """Runs sticky workers one after another against one store and one recording gateway."""

    def __init__(self, store: SqliteStore, root: Path) -> None:
        self.store, self.root = store, root
        self.gateway, self.metrics = RecordingGateway(), WorkerMetrics()

    async def __call__(self, worker_id: str) -> tuple[str | None, list[str]]:
        """Run one until it idles out, and record its exit as ``factory worker run`` does: its pin
        in the store, and the messages it answered."""
        store, gateway, metrics = self.store, self.gateway, self.metrics
        before = len(gateway.requests)
        mem = memory(store, state_dir(self.root / worker_id), worker_id=worker_id)
        config = WorkerConfig(worker_id=worker_id, sticky=True, poll_s=0.05, idle_exit_s=0.3)
        exit_ = await Worker(config, store, await _runner(store, gateway, metrics), metrics, Readiness(), mem).run()
        assert exit_.reason == "idle"
        await record_exit(store, worker_id, exit_)
        [record] = [w for w in await store.list_workers() if w.worker_id == worker_id]
        return record.pinned_conversation_id, [split_history(r.text)[1] for r in gateway.requests[before:]]


async def test_a_sticky_worker_leaves_a_conversation_to_the_worker_pinned_to_it(
    store: SqliteStore, tmp_path: Path
) -> None:
    """The conversation's own worker holds it while it is heard from: a sticky spare never races it
    for the next message. Silent past the hold (frozen in a suspend, say), its conversation goes to
    anyone rather than wait, but the spare that answers it does not pin itself there too: the memory
    is with the sleeper, and two pinned workers would each snapshot their own."""
    assert isinstance(store.clock, ManualClock)
    await store.worker_register(WorkerRegistration(worker_id="sleeper", provider="local", conversation_id="c1"))
    await store.enqueue(message("c1", "while it is awake"))
    await store.enqueue(message("c2", "a new one"))
    run = _StickyRun(store, tmp_path)
    assert await run("spare") == ("c2", ["a new one"])  # c1 is older, but its worker holds it
    store.clock.advance(HOLD_MS)
    assert await run("spare2") == (None, ["while it is awake"])
    assert [w.worker_id for w in await store.list_workers() if w.pinned_conversation_id == "c1"] == ["sleeper"]


def test_snapshots_when_idle_are_on_unless_the_setting_turns_them_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_config(WorkerSettings()).snapshot_when_idle
    monkeypatch.setenv("FACTORY_SNAPSHOT_WHEN_IDLE", "false")
    assert not worker_config(WorkerSettings()).snapshot_when_idle
