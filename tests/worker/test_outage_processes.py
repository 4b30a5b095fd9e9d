"""Outages of the real gateway and of a real Convex store, seen by `factory worker run` processes.

A blackout proxy (bench/chaos/blackout.py) sits between the worker and the service: cut, it refuses
connections and drops open ones, as a dead service does; restored, the service is back. These are
the short versions of `make chaos`'s outages (a gateway down for 5 minutes, a store refusing
connections for 60 s): the same behaviour, in seconds.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx
import pytest

from bench.chaos.blackout import Blackout
from contracts.convex import ConvexStore
from contracts.convex.standin import StandIn
from contracts.models import MessageRecord
from contracts.roles import OperatorStore
from contracts.sqlite import SqliteStore
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import eventually, message, start_worker_process, worker_env

pytestmark = [pytest.mark.anyio, pytest.mark.gateway, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def _blackout(url: str) -> AsyncIterator[Blackout]:
    port = urlsplit(url).port
    assert port is not None
    async with anyio.create_task_group() as tg:
        yield await tg.start(Blackout(port).serve)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def _worker(store: str, env: dict[str, str], log: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """A worker process with its health port; SIGTERMed at the end, which it must survive to exit 0."""
    health = _free_port()
    process = start_worker_process(store, env, "--health-port", str(health), log=log)
    try:
        yield process, f"http://127.0.0.1:{health}/readyz"
        assert process.poll() is None, (await anyio.Path(log).read_text())[-3000:]  # it rode the outage out
        process.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(process.wait, 60) == 0
    finally:
        process.kill()
    assert "Traceback" not in await anyio.Path(log).read_text()


async def _reasons(readyz: str) -> list[str] | None:
    """/readyz's reasons while it says 503; None when ready (or not listening yet)."""
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            response = await http.get(readyz)
    except httpx.TransportError:
        return ["not listening yet"]
    return None if response.status_code == 200 else list(response.json()["reasons"])


async def _until_unready(readyz: str, component: str) -> None:
    async def unready() -> bool:
        return any(r.startswith(f"{component}:") for r in await _reasons(readyz) or [])

    await eventually(unready, timeout_s=60, what=f"/readyz to blame the {component}")


async def _records(store: OperatorStore, ids: list[str]) -> list[MessageRecord]:
    records = [await store.get_message(i) for i in ids]
    return [r for r in records if r is not None]


async def _until_done(store: OperatorStore, ids: list[str], timeout_s: float = 180) -> None:
    async def done() -> bool:
        return all(r.status == "done" for r in await _records(store, ids))

    await eventually(done, timeout_s=timeout_s, what="every message done")


async def test_a_gateway_blackout_spends_no_attempt_and_readyz_says_why(
    tmp_path: Path, openclaw_gateway: OpenClawGateway
) -> None:
    store = SqliteStore(tmp_path / "bo.db")
    try:
        ids = [await store.enqueue(message(f"bo-{i % 2}", f"blackout {i}")) for i in range(4)]
        async with _blackout(openclaw_gateway.url) as proxy:
            await proxy.cut()  # the gateway is down before the worker even starts
            env = worker_env(openclaw_gateway, OPENCLAW_GATEWAY_URL=proxy.url)
            async with _worker(str(store.path), env, tmp_path / "worker.log") as (_, readyz):
                await _until_unready(readyz, "gateway")
                assert [(r.status, r.attempts) for r in await _records(store, ids)] == [("queued", 0)] * 4
                await proxy.restore()
                await _until_done(store, ids)
                # Down again while a turn is running: the message goes back, the run it started is
                # picked up again by its idempotency key once the gateway is reachable.
                slow = await store.enqueue(message("bo-slow", "SLOW:4000 cut off mid-turn"))

                async def running() -> bool:
                    return len(openclaw_gateway.calls_for("cut off mid-turn")) == 1

                await eventually(running, timeout_s=60, what="the slow turn")
                await proxy.cut()
                await _until_unready(readyz, "gateway")
                await proxy.restore()
                await _until_done(store, [slow])
        records = await _records(store, [*ids, slow])
        assert [(r.status, r.attempts) for r in records] == [("done", 1)] * 5
        assert len(openclaw_gateway.calls_for("cut off mid-turn")) == 1
        assert (await store.queue_stats()).dead_letters == 0
    finally:
        await store.aclose()


@pytest.mark.convex
async def test_a_store_refusing_connections_is_ridden_out_without_a_traceback(
    tmp_path: Path, openclaw_gateway: OpenClawGateway, convex_standin: StandIn
) -> None:
    convex_standin.reset(env={"FACTORY_AUTH": "open"})
    store = ConvexStore(convex_standin.url)
    try:
        ids = [await store.enqueue(message(f"so-{i % 2}", f"store outage {i}")) for i in range(4)]
        async with _blackout(convex_standin.url) as proxy:
            env = worker_env(openclaw_gateway)
            async with _worker(proxy.url, env, tmp_path / "worker.log") as (_, readyz):
                await _until_done(store, ids[:1])
                await proxy.cut()
                await _until_unready(readyz, "store")
                await anyio.sleep(2)  # longer than the client's own retries of one call
                await proxy.restore()
                await _until_done(store, ids)
        records = await _records(store, ids)
        assert [r.status for r in records] == ["done"] * 4
        assert (await store.queue_stats()).dead_letters == 0
    finally:
        await store.aclose()
