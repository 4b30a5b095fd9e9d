"""The account runtime against the REAL OpenClaw gateway (stub model on loopback), in this process."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from contracts.clock import ManualClock
from contracts.roles import AccountRuntimeStore
from contracts.runtime import Account, Notification, RuntimeAgent, Task, new_service_token, token_hash
from contracts.sqlite import SqliteStore
from runtime.service import Runtime, RuntimeConfig
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import eventually
from worker.health import HealthServer, Readiness
from worker.openclaw.ready import ReadyProbe
from worker.openclaw.ws import WsDelivery

pytestmark = pytest.mark.anyio
CONFIG = RuntimeConfig(
    account_id="acme", delivery_interval_s=0.1, health_check_interval_s=0.1, grace_s=10, worker_poll_s=0.2
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "rt.db", rng=random.Random(1))
    try:
        yield s
    finally:
        await s.aclose()


async def _account(store: SqliteStore) -> AccountRuntimeStore:
    await store.account_put(Account(account_id="acme", name="Acme"))
    token = new_service_token()
    await store.account_token("acme", token_hash(token))
    for slug, openclaw in (("jarvis", "main"), ("friday", "alpha")):
        agent = RuntimeAgent(
            agent_id=f"acme-{slug}", account_id="acme", name=slug, slug=slug, heartbeat_interval=1,
            openclaw_agent_id=openclaw,
        )  # fmt: skip
        await store.runtime_agent_put(agent)
    await store.task_put(Task(task_id="t-ship", account_id="acme", title="Ship the release"))
    return await store.open_account("acme", token)


async def _post(store: SqliteStore, notification_id: str, slug: str, title: str, task: str | None = None) -> None:
    note = Notification(
        notification_id=notification_id, account_id="acme", agent_id=f"acme-{slug}", type="mention", title=title,
        body=f"Please look at {title}", task_id=task,
    )  # fmt: skip
    await store.notification_post(note)


@pytest.mark.gateway
async def test_notifications_are_delivered_in_order_marked_once_and_replies_posted_heartbeats_stay_silent(
    store: SqliteStore, openclaw_gateway: OpenClawGateway
) -> None:
    account = await _account(store)
    for i in range(3):
        await _post(store, f"j{i}", "jarvis", f"rt-jarvis-{i}", "t-ship" if i != 1 else None)
    for i in range(2):
        await _post(store, f"f{i}", "friday", f"rt-friday-{i}")
    clock = ManualClock()
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=120) as delivery:
        service = Runtime(
            CONFIG,
            account,
            store,
            delivery,
            ReadyProbe(openclaw_gateway.url),
            worker_store=lambda: SqliteStore(store.path),
            clock=clock,
            rng=random.Random(3),
        )
        server = HealthServer(
            readiness=Readiness(), routes={"/health": service.health, "/version": service.version_info}
        )
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)

            async def run_then_close() -> None:
                await service.run()
                tg.cancel_scope.cancel()  # the health server too

            tg.start_soon(run_then_close)

            async def all_delivered() -> bool:
                return await account.undelivered() == [] and service.state.delivered == 5

            await eventually(all_delivered, timeout_s=240, what="five notifications delivered")
            async with httpx.AsyncClient(trust_env=False) as client:
                health = (await client.get(f"{server.url}/health")).json()
                version = (await client.get(f"{server.url}/version")).json()
            assert health["status"] == "healthy", health
            assert health["gateway"] == {"running": True, "sessions": 2}
            assert (health["delivery"]["delivered"], health["delivery"]["failed"]) == (5, 0)
            assert version["accountId"] == "acme"

            clock.advance(61_000)  # every first heartbeat falls due within its first minute

            async def hearts_online() -> bool:
                agents = await account.agents()
                return all(a.heartbeat_status == "online" for a in agents)

            await eventually(hearts_online, timeout_s=240, what="both agents' heartbeats completed")
            service.request_stop()
    view = await store.account_view("acme")
    assert view is not None
    assert view.account.status == "offline"
    assert all(n.delivered_at is not None for n in view.notifications)
    # Only the notifications with a task are answered there; the heartbeats' NO_REPLY nowhere.
    assert [(m.agent_id, m.task_id) for m in view.messages] == [("acme-jarvis", "t-ship")] * 2
    assert all(m.content.startswith("STUB-REPLY: ") for m in view.messages)
    for slug, count in (("jarvis", 3), ("friday", 2)):
        calls = [c["user_text"] for c in openclaw_gateway.llm_calls() if f"rt-{slug}-" in c["user_text"]]
        order = [next(i for i in range(count) if f"rt-{slug}-{i}" in text) for text in calls]
        assert order == list(range(count)), f"{slug}'s notifications reached the model as {order}"
    heartbeats = openclaw_gateway.calls_for("## Heartbeat Check")
    assert len(heartbeats) >= 2


async def test_health_is_degraded_and_the_status_too_while_the_gateway_is_stopped(store: SqliteStore) -> None:
    account = await _account(store)
    stopped = "http://127.0.0.1:9"  # nothing listens there: a gateway that is not running
    async with WsDelivery("ws://127.0.0.1:9", "token", timeout_s=5) as delivery:
        service = Runtime(
            CONFIG, account, store, delivery, ReadyProbe(stopped), worker_store=lambda: SqliteStore(store.path)
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)

            async def degraded() -> bool:
                view = await store.account_view("acme")
                return view is not None and view.account.status == "degraded"

            await eventually(degraded, timeout_s=30, what="runtime status degraded")
            health = service.health()
            assert health["status"] == "degraded" and health["gateway"]["running"] is False
            service.request_stop()
    view = await store.account_view("acme")
    assert view is not None and view.account.status == "offline"
