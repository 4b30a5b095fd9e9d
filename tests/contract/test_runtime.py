"""The runtime role: accounts, service tokens bound to one account, notifications settled by the queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from contracts.errors import NotFound
from contracts.models import AgentProfile, EnqueueRequest, HistoryMessage, MessagePayload
from contracts.roles import AccountRuntimeStore, AccountStore
from contracts.runtime import (
    NOTIFICATION_KEY,
    RUNTIME_PROVIDER,
    AccessRefused,
    Account,
    Notification,
    RuntimeAgent,
    RuntimeDetails,
    Task,
    new_service_token,
    token_hash,
)
from tests.contract.conftest import Harness
from tests.contract.helpers import lease_of, register

if TYPE_CHECKING:
    from pydantic import SecretStr

    from contracts.convex import ConvexStore
    from contracts.convex.runtime import ConvexAccount
    from contracts.sqlite import SqliteStore
    from contracts.sqlite.runtime import BoundAccount

    _bound: AccountRuntimeStore = BoundAccount(SqliteStore(":memory:"), "a", SecretStr("t"))
    _convex: AccountRuntimeStore = ConvexAccount(ConvexStore("https://x.convex.cloud"), "a", SecretStr("t"))

pytestmark = pytest.mark.anyio


def _accounts(harness: Harness) -> AccountStore:
    return harness.store


async def _account(store: AccountStore, account_id: str) -> tuple[AccountRuntimeStore, RuntimeAgent]:
    """An account with one agent, one task and one notification; its runtime's bound handle."""
    await store.account_put(Account(account_id=account_id, name=account_id.title()))
    token = new_service_token()
    assert await store.account_token(account_id, token_hash(token))
    agent = await store.runtime_agent_put(
        RuntimeAgent(agent_id=f"{account_id}-jarvis", account_id=account_id, name="Jarvis", slug="jarvis")
    )
    await store.task_put(Task(task_id=f"{account_id}-t1", account_id=account_id, title="Ship it"))
    await store.notification_post(
        Notification(
            notification_id=f"{account_id}-n1",
            account_id=account_id,
            agent_id=agent.agent_id,
            type="assignment",
            title="New task",
            body="Please ship it",
            task_id=f"{account_id}-t1",
        )
    )
    return await store.open_account(account_id, token), agent


async def test_a_token_for_one_account_is_refused_on_another_accounts_rows(harness: Harness) -> None:
    store = _accounts(harness)
    a, agent_a = await _account(store, "acme")
    b, agent_b = await _account(store, "globex")
    token = new_service_token()
    await store.account_token("acme", token_hash(token))
    with pytest.raises(AccessRefused):
        await a.agents()  # the token was rotated: the handle opened with the old one stops at once
    a = await store.open_account("acme", token)
    with pytest.raises(AccessRefused) as refused:
        await store.open_account("globex", token)
    assert token.get_secret_value() not in str(refused.value)
    with pytest.raises(AccessRefused):
        await store.open_account("nobody", token)
    # A handle bound to acme finds nothing of globex's, even given its ids.
    assert [x.agent_id for x in await a.agents()] == [agent_a.agent_id]
    assert [n.notification_id for n in await a.undelivered()] == ["acme-n1"]
    assert await a.for_delivery("globex-n1") is None
    assert not await a.mark_delivered("globex-n1")
    assert not await a.upsert_heartbeat(agent_b.agent_id, "online")
    assert await a.create_from_agent(agent_b.agent_id, "globex-t1", "hi") is None
    assert await a.create_from_agent(agent_a.agent_id, "globex-t1", "hi") is None
    assert [n.notification_id for n in await b.undelivered()] == ["globex-n1"]
    globex = await store.account_view("globex")
    assert globex is not None and globex.messages == [] and globex.agents[0].heartbeat_status is None


async def test_delivery_context_status_and_posts_stay_in_the_account(harness: Harness) -> None:
    store = _accounts(harness)
    bound, agent = await _account(store, "acme")
    context = await bound.for_delivery("acme-n1")
    assert context is not None and context.task is not None
    assert (context.agent.session_key, context.task.title) == ("agent:jarvis:acme", "Ship it")
    assert await bound.mark_delivered("acme-n1")
    assert not await bound.mark_delivered("acme-n1")
    assert await bound.undelivered() == []
    assert await bound.upsert_heartbeat(agent.agent_id, "degraded")
    posted = await bound.create_from_agent(agent.agent_id, "acme-t1", "Shipped.")
    assert posted is not None and posted.content == "Shipped."
    online = await bound.update_runtime_status("online", RuntimeDetails(droplet_id="42", last_health_check=5))
    assert (online.status, online.droplet_id, online.last_health_check) == ("online", "42", 5)
    offline = await bound.update_runtime_status("offline")
    assert (offline.status, offline.droplet_id) == ("offline", "42")
    view = await store.account_view("acme")
    assert view is not None
    assert [m.content for m in view.messages] == ["Shipped."]
    assert view.agents[0].heartbeat_status == "degraded"
    assert view.notifications[0].delivered_at is not None
    assert view.account.status == "offline"


async def test_bad_references_are_refused_and_a_repeated_notification_is_kept(harness: Harness) -> None:
    store = _accounts(harness)
    await _account(store, "acme")
    with pytest.raises(NotFound):
        await store.runtime_agent_put(RuntimeAgent(agent_id="x", account_id="nobody", name="X", slug="x"))
    note = Notification(notification_id="acme-n1", account_id="acme", agent_id="acme-jarvis", type="t", title="other")
    assert (await store.notification_post(note)).title == "New task"
    with pytest.raises(NotFound):
        await store.notification_post(note.model_copy(update={"notification_id": "n2", "task_id": "globex-t1"}))


async def test_completing_a_notifications_message_delivers_it_and_posts_the_reply_once(harness: Harness) -> None:
    store = _accounts(harness)
    bound, agent = await _account(store, "acme")
    await harness.store.upsert_agent_profile(AgentProfile(agent_key=agent.agent_key))
    payload = MessagePayload(
        provider=RUNTIME_PROVIDER,
        provider_user_id=agent.agent_id,
        message_text="## Notification",
        external_message_id="acme-n1",
        metadata={NOTIFICATION_KEY: "acme-n1"},
    )
    request = EnqueueRequest(conversation_id=agent.session_key, agent_key=agent.agent_key, payload=payload)
    message_id = await harness.store.enqueue(request)
    assert await harness.store.enqueue(request) == message_id  # deduped on the notification id
    await register(harness.store)
    job = await harness.store.worker_claim("w1")
    assert job is not None and job.message_id == message_id
    reply = [HistoryMessage(role="user", content="## Notification"), HistoryMessage(role="assistant", content="On it")]
    assert (await harness.store.worker_complete(lease_of(job), history=reply)).ok
    assert (await harness.store.worker_complete(lease_of(job), history=reply)).ok  # a replay
    assert await bound.undelivered() == []
    view = await store.account_view("acme")
    assert view is not None
    assert [(m.task_id, m.content) for m in view.messages] == [("acme-t1", "On it")]


async def test_a_message_in_another_conversation_cannot_settle_a_notification(harness: Harness) -> None:
    store = _accounts(harness)
    bound, _ = await _account(store, "acme")
    await harness.store.upsert_agent_profile(AgentProfile(agent_key="intruder"))
    payload = MessagePayload(
        provider="app", provider_user_id="u", message_text="hi", metadata={NOTIFICATION_KEY: "acme-n1"}
    )
    await harness.store.enqueue(EnqueueRequest(conversation_id="elsewhere", agent_key="intruder", payload=payload))
    await register(harness.store)
    job = await harness.store.worker_claim("w1")
    assert job is not None
    assert (await harness.store.worker_complete(lease_of(job))).ok
    assert [n.notification_id for n in await bound.undelivered()] == ["acme-n1"]
