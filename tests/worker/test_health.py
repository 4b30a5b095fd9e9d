"""The health server over real loopback HTTP, run inside the test's task group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker.health import HealthServer, Readiness
from worker.metrics import WorkerMetrics


@dataclass
class Running:
    server: HealthServer
    readiness: Readiness
    metrics: WorkerMetrics
    client: httpx.AsyncClient


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    readiness, metrics = Readiness(), WorkerMetrics()
    server = HealthServer(readiness=readiness, metrics=metrics)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        async with httpx.AsyncClient(base_url=server.url, trust_env=False, timeout=5) as client:
            yield Running(server, readiness, metrics, client)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_port_zero_binds_a_free_port_and_reports_it() -> None:
    server = HealthServer(readiness=Readiness(), port=0)
    with pytest.raises(RuntimeError, match="not listening"):
        _ = server.port
    async with anyio.create_task_group() as tg:
        port = await tg.start(server.serve)
        assert port == server.port > 0
        assert server.url == f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()
    # Cancelled with its task group: the port is closed again.
    with pytest.raises(OSError, match="connection attempts failed"):
        await anyio.connect_tcp("127.0.0.1", port)


@pytest.mark.anyio
async def test_healthz_is_always_ok(running: Running) -> None:
    response = await running.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.anyio
async def test_readyz_follows_registration_faults_and_draining(running: Running) -> None:
    async def readyz() -> tuple[int, list[str]]:
        response = await running.client.get("/readyz")
        return response.status_code, response.json()["reasons"]

    assert await readyz() == (503, ["not registered with the store", "gateway: not checked yet"])
    running.readiness.mark_registered()
    assert await readyz() == (503, ["gateway: not checked yet"])
    running.readiness.clear("gateway")
    assert await readyz() == (200, [])
    assert running.readiness.ready
    running.readiness.fault("store", "connection refused")
    running.readiness.fault("gateway", "token refused")
    assert await readyz() == (503, ["store: connection refused", "gateway: token refused"])
    assert (await running.client.get("/healthz")).status_code == 200  # waiting out an outage is alive
    running.readiness.clear("store")
    running.readiness.clear("gateway")
    running.readiness.mark_draining()
    assert await readyz() == (503, ["draining"])
    assert (await running.client.get("/healthz")).status_code == 200  # draining is not dead


@pytest.mark.anyio
async def test_metrics_exposes_the_counters_in_prometheus_text(running: Running) -> None:
    running.metrics.claimed()
    running.metrics.claimed()
    running.metrics.failed(retryable=False)
    running.metrics.reply_sent("telegram")
    running.metrics.delivery_seconds.observe(0.3)
    response = await running.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples[("factory_worker_claims_total", ())] == 2
    assert samples[("factory_worker_fails_total", (("retryable", "false"),))] == 1
    assert samples[("factory_worker_fails_total", (("retryable", "true"),))] == 0
    assert samples[("factory_worker_replies_sent_total", (("channel", "telegram"),))] == 1
    assert samples[("factory_worker_delivery_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("factory_worker_busy", ())] == 0


@pytest.mark.anyio
async def test_metrics_speaks_openmetrics_when_asked(running: Running) -> None:
    response = await running.client.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


@pytest.mark.anyio
async def test_unknown_paths_and_methods(running: Running) -> None:
    assert (await running.client.get("/nope")).status_code == 404
    response = await running.client.post("/healthz", content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    head = await running.client.head("/readyz")
    assert head.status_code == 503
    assert head.content == b""
    assert (await running.client.get("/healthz?verbose=1")).status_code == 200


@pytest.mark.anyio
async def test_no_metrics_configured_is_a_404() -> None:
    server = HealthServer(readiness=Readiness())
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        async with httpx.AsyncClient(base_url=server.url, trust_env=False) as client:
            assert (await client.get("/metrics")).status_code == 404
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_garbage_gets_a_400_and_the_server_carries_on(running: Running) -> None:
    async with await anyio.connect_tcp("127.0.0.1", running.server.port) as stream:
        await stream.send(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        with anyio.fail_after(5):
            try:
                while True:
                    answer += await stream.receive()
            except anyio.EndOfStream:
                pass
    assert answer.startswith(b"HTTP/1.1 400")
    assert (await running.client.get("/healthz")).status_code == 200


@pytest.mark.anyio
async def test_an_idle_connection_is_closed_after_the_read_timeout() -> None:
    server = HealthServer(readiness=Readiness(), read_timeout=0.1)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        async with await anyio.connect_tcp("127.0.0.1", server.port) as stream:
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await stream.receive()
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_keep_alive_serves_many_requests_on_one_connection(running: Running) -> None:
    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
    async with await anyio.connect_tcp("127.0.0.1", running.server.port) as stream:
        for _ in range(3):
            await stream.send(request)
            answer = b""
            with anyio.fail_after(5):
                while not answer.endswith(b'{"status": "ok"}\n'):
                    answer += await stream.receive()
            assert answer.startswith(b"HTTP/1.1 200")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        HealthServer(readiness=Readiness(), port=70000)
    with pytest.raises(ValueError, match="read_timeout"):
        HealthServer(readiness=Readiness(), read_timeout=0)
