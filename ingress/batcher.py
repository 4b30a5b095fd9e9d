"""Group commit for webhook updates: concurrent requests share one store transaction.

On SQLite with ``synchronous=FULL`` every commit waits for the disk (milliseconds), so one commit
per update caps the webhook far below a busy bot's rate. Each request hands its update to the
batcher and waits; the batcher takes whatever has queued up (up to ``max_batch``), records it in
one call (one transaction, one fsync), and answers each request with its own result. Nothing is
answered before its transaction committed, so a 200 still means "stored".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from contracts.ingress import IngestResult, TelegramUpdateRecord


class _Ingest(Protocol):
    async def ingest_telegram_updates(self, records: Sequence[TelegramUpdateRecord]) -> list[IngestResult]: ...


@dataclass
class _Pending:
    record: TelegramUpdateRecord
    done: anyio.Event = field(default_factory=anyio.Event)
    result: IngestResult | None = None
    error: BaseException | None = None


class UpdateBatcher:
    def __init__(self, store: _Ingest, *, max_batch: int = 256) -> None:
        self._store = store
        self._max_batch = max_batch
        self._send, self._receive = anyio.create_memory_object_stream[_Pending](max_buffer_size=10_000)

    async def submit(self, record: TelegramUpdateRecord) -> IngestResult:
        """Record one update (with the others waiting now); raises what the store raised."""
        pending = _Pending(record)
        await self._send.send(pending)
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None  # set together with done
        return pending.result

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with self._receive:
            async for first in self._receive:
                # Let the requests that arrived meanwhile queue up behind the first one.
                await anyio.lowlevel.cancel_shielded_checkpoint()
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            results = await self._store.ingest_telegram_updates([p.record for p in batch])
        except Exception as exc:  # the whole batch failed (store unavailable): each request says so
            for pending in batch:
                pending.error = exc
                pending.done.set()
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
            pending.done.set()
