"""Eight processes share one SQLite file: no overlapping leases, nothing lost, order kept."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import time
from collections import defaultdict
from pathlib import Path

import anyio
import pytest

from contracts.models import EnqueueRequest, LeaseRef, MessagePayload, WorkerRegistration
from contracts.sqlite import SqliteStore

PROCESSES = 8
CONVERSATIONS = 200
PER_CONVERSATION = 25  # 5,000 messages


def _drain(db: str, worker_id: str, out: str) -> None:
    async def run() -> None:
        store = SqliteStore(db, synchronous="NORMAL")
        await store.worker_register(WorkerRegistration(worker_id=worker_id, provider="test"))
        lines = []
        empty_in_a_row = 0
        while empty_in_a_row < 3:
            job = await store.worker_claim(worker_id)
            if job is None:
                empty_in_a_row += 1
                await anyio.sleep(0.01)
                continue
            empty_in_a_row = 0
            held_from = time.monotonic()
            conversation, index = job.payload.message_text.split("#")
            held_until = time.monotonic()
            lease = LeaseRef(worker_id=worker_id, message_id=job.message_id, lease_id=job.lease_id)
            ok = (await store.worker_complete(lease)).ok
            lines.append([job.message_id, conversation, int(index), held_from, held_until, ok, job.attempt])
        await store.aclose()
        await anyio.Path(out).write_text(json.dumps(lines))

    anyio.run(run)


async def _fill(db: Path) -> int:
    store = SqliteStore(db, synchronous="NORMAL")
    for index in range(PER_CONVERSATION):
        for c in range(CONVERSATIONS):
            await store.enqueue(
                EnqueueRequest(
                    conversation_id=f"conv-{c}",
                    agent_key="default",
                    payload=MessagePayload(provider="app", provider_user_id="u", message_text=f"conv-{c}#{index}"),
                )
            )
    total = (await store.queue_stats()).queued
    await store.aclose()
    return total


@pytest.mark.slow
def test_eight_processes_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    assert anyio.run(_fill, db) == CONVERSATIONS * PER_CONVERSATION
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_drain, args=(str(db), f"w{i}", str(tmp_path / f"w{i}.json"))) for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0

    records = [row for i in range(PROCESSES) for row in json.loads((tmp_path / f"w{i}.json").read_text())]
    # Nothing lost, nothing delivered twice, every complete accepted on the first attempt.
    assert len(records) == CONVERSATIONS * PER_CONVERSATION
    assert len({r[0] for r in records}) == len(records)
    assert all(r[5] and r[6] == 1 for r in records)

    by_conversation: dict[str, list[list[object]]] = defaultdict(list)
    for r in records:
        by_conversation[str(r[1])].append(r)
    for conversation, rows in by_conversation.items():
        rows.sort(key=lambda r: float(r[3]))  # type: ignore[arg-type]
        # Order kept: delivered in enqueue order.
        assert [r[2] for r in rows] == list(range(PER_CONVERSATION)), conversation
        # No overlap: each lease was released before the next one on the conversation began.
        for before, after in itertools.pairwise(rows):
            assert float(before[4]) <= float(after[3]), conversation  # type: ignore[arg-type]

    async def final_stats() -> tuple[int, int]:
        store = SqliteStore(db)
        stats = await store.queue_stats()
        await store.aclose()
        return stats.done, stats.queued + stats.processing + stats.dead_letters

    assert anyio.run(final_stats) == (CONVERSATIONS * PER_CONVERSATION, 0)
