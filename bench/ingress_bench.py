"""Webhook ingress: requests/s and accept latency, beside a bare route of the same framework.

A server process runs ``factory serve``'s real app (SQLite store) with one extra route, ``POST
/bare``, that reads the body and answers ``{"ok": true}`` with no store work: the framework's own
floor. This process offers Telegram updates at 1,000 per second for 10 s (open loop, at most 200
requests in flight over 200 connections), each with its secret token, to the webhook, then the
same load to the bare route. Latency is measured at the client from sending a request to its
answer ("accepted"). Afterwards the store is counted: every update must be there exactly once.

Nothing is asserted; the figure is the ratio (and the difference of p50s) between the two routes.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import httpx
from fastapi import Request

from contracts.ingress import TelegramWebhook, token_hash
from contracts.sqlite import SqliteStore
from ingress import IngressConfig, IngressServer, create_app

Sync = Literal["FULL", "NORMAL"]
SECRET = "bench-secret-token-0123456789abcdef"
RATE, CONNECTIONS, CHATS = 1000, 200, 100
# The figure is 10 s; FACTORY_BENCH_INGRESS_S shortens it on a busy machine.
SECONDS = float(os.environ.get("FACTORY_BENCH_INGRESS_S", "10"))
SYNCS: tuple[Sync, ...] = tuple(os.environ.get("FACTORY_BENCH_INGRESS_SYNC", "FULL,NORMAL").split(","))  # type: ignore[arg-type]  # reason: the two values below


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(db: str, sync: Sync, port: int) -> None:
    app = create_app(lambda: SqliteStore(Path(db), synchronous=sync), IngressConfig())

    @app.post("/bare")
    async def bare(request: Request) -> dict[str, bool]:
        await request.body()  # read, as the webhook reads its body
        return {"ok": True}

    anyio.run(IngressServer(app, port=port, grace_s=1).serve)


@dataclass
class Run:
    route: str
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    @property
    def rate(self) -> float:
        return self.ok / self.seconds


def _update(i: int) -> dict[str, object]:
    chat = 100_000 + i % CHATS
    return {
        "update_id": i,
        "message": {"message_id": i, "from": {"id": chat}, "chat": {"id": chat}, "text": f"update {i}"},
    }


async def _load(url: str, route: str, first_id: int) -> Run:
    latencies: list[float] = []
    ok = 0
    limiter = anyio.CapacityLimiter(CONNECTIONS)
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    async with httpx.AsyncClient(base_url=url, limits=httpx.Limits(max_connections=CONNECTIONS), timeout=60) as client:

        async def one(i: int) -> None:
            nonlocal ok
            async with limiter:
                start = time.perf_counter()
                try:
                    reply = await client.post(route, json=_update(i), headers=headers)
                except httpx.TransportError:
                    return  # counted as not answered (Telegram would redeliver it)
                latencies.append((time.perf_counter() - start) * 1000)
                ok += reply.status_code == 200

        total = int(RATE * SECONDS)
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(total):
                # Open loop: the n-th request is due at n / RATE seconds, whatever came back.
                delay = began + n / RATE - time.perf_counter()
                if delay > 0:
                    await anyio.sleep(delay)
                tg.start_soon(one, first_id + n)
        return Run(route, total, ok, time.perf_counter() - began, latencies)


async def _both(url: str) -> tuple[Run, Run]:
    webhook = await _load(url, "/telegram/webhook/default", 1)
    bare = await _load(url, "/bare", 10_000_000)
    return webhook, bare


async def _prepare(db: Path, sync: Sync) -> None:
    store = SqliteStore(db, synchronous=sync)
    await store.set_telegram_webhook(TelegramWebhook(agent_key="default", bot_id="1", secret_hash=token_hash(SECRET)))
    await store.aclose()


async def _count(db: Path) -> tuple[int, int]:
    store = SqliteStore(db)
    stored = 0
    unique: set[str] = set()
    for chat in range(CHATS):
        for m in await store.conversation_messages(f"telegram:1:{100_000 + chat}", 10_000):
            stored += 1
            unique.add(m.text)
    await store.aclose()
    return stored, len(unique)


def bench_sync(sync: Sync) -> None:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        db, port = Path(tmp) / "ingress.db", _free_port()
        anyio.run(_prepare, db, sync)
        server = ctx.Process(target=_serve, args=(str(db), sync, port), daemon=True)
        server.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        try:
            webhook, bare = anyio.run(_both, url)
        finally:
            server.terminate()
        server.join()
        stored, unique = anyio.run(_count, db)
    print(f"  synchronous={sync}, offered {RATE}/s for {SECONDS:g} s, {CONNECTIONS} connections:")
    for run in (webhook, bare):
        print(
            f"    {run.route:<28} {run.rate:7.0f} req/s  p50 {run.pct(0.5):6.1f} ms  p99 {run.pct(0.99):7.1f} ms"
            f"  ({run.ok}/{run.sent} answered 200)"
        )
    print(
        f"    webhook/bare: throughput {webhook.rate / bare.rate:.2f}×, p50 +{webhook.pct(0.5) - bare.pct(0.5):.1f} ms;"
        f" stored {stored} messages for {webhook.ok} accepted updates ({unique} distinct: "
        f"{webhook.ok - unique} lost, {stored - unique} duplicated)"
    )


def run() -> None:
    print("webhook ingress (factory serve, SQLite) beside a bare FastAPI route in the same server")
    for sync in SYNCS:
        bench_sync(sync)
