"""(b) A real local fleet under fire: ``factory worker run`` processes, a real OpenClaw gateway with
the offline stub model, workers SIGKILLed at random, and the gateway SIGKILLed once mid-turn and
started again on the same state.

Every message carries ``SLOW:<ms>`` so kills land inside turns. Afterwards:

* lost, dead letters, ``PRAGMA integrity_check``, drain time (the store);
* replies recorded once: each message's turn (its text, then the agent's reply) appears exactly
  once in its conversation's history, in enqueue order (order violations otherwise);
* agent turns per message: the message's user turn in the agent's own session transcript
  (``chat.history``), exactly once: a message the gateway lost in its crash is neither dropped nor
  sent again on top of the gateway's own recovery;
* duplicate completions: a message completed by two workers (from the workers' logs);
* redeliveries vs kills: only a worker killed in the middle of a job may strand a lease (each
  victim is stopped, looked up in the store, then killed, so the count is exact); the gateway
  crash may not cost a single attempt (its messages are given back, not failed);
* tracebacks in any worker's log.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from bench.chaos.local import WorkerProcesses, local_gateway
from bench.chaos.report import Report
from contracts.models import EnqueueRequest, MessagePayload
from contracts.sqlite import SqliteStore
from gateway.runtime import GatewayRuntime
from worker.delivery import DeliveryRequest
from worker.errors import DeliveryError
from worker.openclaw.recovery import key_number
from worker.openclaw.sessions import session_key
from worker.openclaw.ws import WsDelivery

_COMPLETED = re.compile(r"\bcompleted\b.*\bmessage_id=(\S+)")


@dataclass(frozen=True)
class FleetPlan:
    messages: int = 300
    conversations: int = 30
    workers: int = 4
    worker_kill_every_s: float = 8.0
    # The gateway is SIGKILLed once this share of the messages is done, while a turn is running.
    gateway_kill_at: float = 0.4
    slow_ms: tuple[int, int] = (300, 2_000)
    lease_ttl_ms: int = 6_000
    max_attempts: int = 20  # more than 5, for the reason StormPlan.max_attempts gives
    timeout_s: float = 1_200.0
    gateway_ready_s: float = 300.0
    seed: int = 11


@dataclass
class _Fleet:
    workers: WorkerProcesses
    db: Path
    rng: random.Random
    worker_kills: int = 0
    kills_mid_job: int = 0
    gateway_kills: int = 0
    gateway_down_s: float = 0.0
    done_before_crash: list[str] = field(default_factory=list)

    def kill(self, i: int) -> None:
        """Stop the worker, see whether it holds a job, then SIGKILL it and start another."""
        worker_id, process, _ = self.workers.running[i]
        process.send_signal(signal.SIGSTOP)
        held = _holding(self.db, worker_id)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        self.worker_kills += 1
        self.kills_mid_job += int(held)
        self.workers.running[i] = self.workers.spawn()


def run_fleet(plan: FleetPlan, workdir: Path | None = None) -> Report:
    with tempfile.TemporaryDirectory(prefix="factory-chaos-fleet-") as tmp:
        root = workdir or Path(tmp)
        with local_gateway(root, ready_timeout_s=plan.gateway_ready_s) as runtime:
            return _run(plan, root, runtime)


def _run(plan: FleetPlan, root: Path, runtime: GatewayRuntime) -> Report:
    db = root / "fleet.db"
    texts = anyio.run(_fill, db, plan)
    fleet = _Fleet(WorkerProcesses.for_gateway(root, str(db), runtime), db, random.Random(plan.seed))
    fleet.workers.start(plan.workers)
    started = time.monotonic()
    drained = False
    try:
        drained = _drive(plan, fleet, runtime)
    finally:
        fleet.workers.stop()
    drain_s = time.monotonic() - started
    return _check(plan, fleet, runtime, texts, drained, drain_s)


async def _fill(db: Path, plan: FleetPlan) -> dict[str, str]:
    """Enqueue the messages; returns message id → text (distinct texts within a conversation)."""
    rng = random.Random(plan.seed)
    store = SqliteStore(db, lease_ttl_ms=plan.lease_ttl_ms)
    texts: dict[str, str] = {}
    for i in range(plan.messages):
        conversation = f"chaos-{i % plan.conversations}"
        text = f"SLOW:{rng.randint(*plan.slow_ms)} message {i} of {conversation}"
        request = EnqueueRequest(
            conversation_id=conversation,
            agent_key="default",
            payload=MessagePayload(provider="app", provider_user_id="u", message_text=text),
            max_attempts=plan.max_attempts,
        )
        texts[await store.enqueue(request)] = text
    await store.aclose()
    return texts


def _holding(db: Path, worker_id: str) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = conn.execute(
            "SELECT count(*) FROM messages WHERE status = 'processing' AND claimed_by = ?", (worker_id,)
        ).fetchone()
    finally:
        conn.close()
    return bool(row[0])


def _counts(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = dict(conn.execute("SELECT status, count(*) FROM messages GROUP BY status").fetchall())
    finally:
        conn.close()
    return rows.get("done", 0) + rows.get("dead_letter", 0), rows.get("processing", 0)


def _done_ids(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [row[0] for row in conn.execute("SELECT message_id FROM messages WHERE status = 'done' ORDER BY seq")]
    finally:
        conn.close()


def _drive(plan: FleetPlan, fleet: _Fleet, runtime: GatewayRuntime) -> bool:
    deadline = time.monotonic() + plan.timeout_s
    next_kill = time.monotonic() + plan.worker_kill_every_s * fleet.rng.uniform(0.5, 1.5)
    while time.monotonic() < deadline:
        finished, processing = _counts(fleet.db)
        if finished >= plan.messages:
            return True
        if not fleet.gateway_kills and finished >= plan.messages * plan.gateway_kill_at and processing:
            _crash_gateway(fleet, runtime)
        if time.monotonic() >= next_kill:
            fleet.kill(fleet.rng.randrange(plan.workers))
            next_kill = time.monotonic() + plan.worker_kill_every_s * fleet.rng.uniform(0.5, 1.5)
        time.sleep(0.2)
    return False


def _crash_gateway(fleet: _Fleet, runtime: GatewayRuntime) -> None:
    """SIGKILL the gateway mid-turn and start it again on the same port and state."""
    pid = runtime.pid
    assert pid is not None
    fleet.done_before_crash = _done_ids(fleet.db)
    os.kill(pid, signal.SIGKILL)
    fleet.gateway_kills += 1
    down = time.monotonic()
    runtime.stop()  # reaps it, and any helper left in its group
    runtime.start()
    fleet.gateway_down_s = time.monotonic() - down


def _check(
    plan: FleetPlan, fleet: _Fleet, runtime: GatewayRuntime, texts: dict[str, str], drained: bool, drain_s: float
) -> Report:
    report = Report(f"local fleet ({plan.messages} msgs, {plan.workers} workers)")
    conn = sqlite3.connect(fleet.db, timeout=30)
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    rows = conn.execute("SELECT message_id, conversation_id, seq, status, attempts FROM messages").fetchall()
    history = conn.execute("SELECT conversation_id, idx, role, content FROM history ORDER BY conversation_id, idx")
    turns: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for conversation, _, role, content in history.fetchall():
        turns[conversation].append((role, content))
    conn.close()
    lost = sum(1 for r in rows if r[3] not in ("done", "dead_letter"))
    dead = sum(1 for r in rows if r[3] == "dead_letter")
    redeliveries = sum(max(0, r[4] - 1) for r in rows)
    recorded, order = _recorded_once(rows, texts, turns)
    agent_turns = anyio.run(_agent_turns, runtime, rows)
    root = fleet.workers.root
    completions = _completions(root)
    calls = Counter(json.loads(line)["user_text"] for line in (root / "stub.jsonl").read_text().splitlines())
    report.add("messages", len(rows))
    report.add(
        "kills (SIGKILL)",
        f"{fleet.worker_kills} workers ({fleet.kills_mid_job} mid-job), {fleet.gateway_kills} gateway",
        bad=fleet.gateway_kills != 1,
        why="the gateway was not killed mid-turn once",
    )
    report.add("gateway down (kill to ready)", f"{fleet.gateway_down_s:.1f} s")
    report.add("lost", lost, bad=lost > 0 or not drained, why="" if drained else "did not drain in time")
    report.add("overlapping leases", "— (see store storm)")
    report.add("order violations", order, bad=order > 0)
    report.add("duplicate completions", dup := sum(1 for n in completions.values() if n > 1), bad=dup > 0)
    report.add(
        "redeliveries vs kills",
        f"{redeliveries} ≤ {fleet.kills_mid_job}",
        bad=redeliveries > fleet.kills_mid_job,
        why="only a worker killed mid-job may cost an attempt",
    )
    report.add("dead letters", dead, bad=dead > 0)
    report.add("replies recorded once", f"{recorded}/{len(rows)}", bad=recorded != len(rows))
    twice = sum(1 for n in agent_turns.values() if n != 1)
    report.add("agent turns ≠ 1 per message", twice, bad=twice > 0, why="the agent saw a message twice, or never")
    report.add("model calls per message (max)", max((calls[t] for t in texts.values()), default=0))
    resent = anyio.run(_send_again, runtime, fleet, rows, turns, texts)
    report.add(
        "a turn done before the crash, sent again",
        resent,
        bad=resent != "answered from the transcript",
        why="the restarted gateway has forgotten its key: the reply must come from the session, not a new turn",
    )
    report.add("worker logs with a traceback", n := fleet.workers.tracebacks(), bad=n > 0)
    report.add("integrity_check", integrity, bad=integrity != "ok")
    report.add("drain time", f"{drain_s:.1f} s")
    return report


def _recorded_once(
    rows: list[tuple[str, str, int, str, int]], texts: dict[str, str], turns: dict[str, list[tuple[str, str]]]
) -> tuple[int, int]:
    """(messages whose turn is recorded exactly once with a reply, conversations out of order)."""
    recorded = 0
    for message_id, conversation, _, _, _ in rows:
        history = turns[conversation]
        at = [i for i, (role, content) in enumerate(history) if role == "user" and content == texts[message_id]]
        replied = len(at) == 1 and at[0] + 1 < len(history) and history[at[0] + 1][0] == "assistant"
        recorded += int(replied)
    order = 0
    by_conversation: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for message_id, conversation, seq, _, _ in rows:
        by_conversation[conversation].append((seq, texts[message_id]))
    for conversation, messages in by_conversation.items():
        expected = [text for _, text in sorted(messages)]
        seen = [content for role, content in turns[conversation] if role == "user"]
        # In order and each once so far: a run cut short by its timeout leaves a prefix, which is
        # counted as lost, not as out of order.
        order += int(seen != expected[: len(seen)])
    return recorded, order


async def _agent_turns(runtime: GatewayRuntime, rows: list[tuple[str, str, int, str, int]]) -> dict[str, int]:
    """How many times each message's user turn is in its agent session's transcript."""
    counts: dict[str, int] = {message_id: 0 for message_id, *_ in rows}
    async with WsDelivery(runtime.ws_url, runtime.token) as gateway:
        for conversation in sorted({r[1] for r in rows}):
            history = await gateway.history(session_key("main", conversation), limit=500)
            for entry in history.messages:
                key = (entry.idempotency_key or "").removesuffix(":user")
                for message_id in counts:
                    if entry.role == "user" and key_number(key, message_id) is not None:
                        counts[message_id] += 1
    return counts


async def _send_again(
    runtime: GatewayRuntime,
    fleet: _Fleet,
    rows: list[tuple[str, str, int, str, int]],
    turns: dict[str, list[tuple[str, str]]],
    texts: dict[str, str],
) -> str:
    """Deliver a message whose turn finished before the gateway crashed once more, as a worker that
    lost the complete would (same key): the reply recorded for it comes back, and the model is not
    called again."""
    if not fleet.done_before_crash:
        return "nothing was done before the crash"
    message_id = fleet.done_before_crash[-1]
    conversation = next(r[1] for r in rows if r[0] == message_id)
    history = turns[conversation]
    at = [i for i, (role, content) in enumerate(history) if role == "user" and content == texts[message_id]]
    recorded = history[at[0] + 1][1]
    stub = fleet.workers.root / "stub.jsonl"
    calls_before = len(stub.read_text().splitlines())
    key = session_key("main", conversation)
    request = DeliveryRequest(message_id=message_id, session_key=key, text=texts[message_id])
    try:
        async with WsDelivery(runtime.ws_url, runtime.token) as gateway:
            reply = await gateway.deliver(request)
    except DeliveryError as exc:
        return f"failed: {type(exc).__name__}"
    if len(stub.read_text().splitlines()) != calls_before:
        return "the model was called again"
    return "answered from the transcript" if reply.text == recorded else "a different reply"


def _completions(root: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for log in root.glob("worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            match = _COMPLETED.search(line)
            if match:
                found[match.group(1)] += 1
    return found
