"""Compatibility mode against a loopback agent-factory 3.1 worker API, in upstream's exact shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.convex import AgentFactoryCompatStore, UnsupportedByCompat
from contracts.errors import InvalidInput, StoreFunctionError
from contracts.models import (
    AppendRequest,
    EnqueueRequest,
    FailRequest,
    HistoryMessage,
    LeaseRef,
    MessagePayload,
    NextClaim,
    ReleaseRequest,
    WorkerRegistration,
)
from contracts.roles import EnqueueStore, FleetStore, OperatorStore, WorkerStore
from factory.settings import StoreSettings
from factory.stores import open_full_store, open_store
from tests.fakes.agent_factory_api import AgentFactoryApi

pytestmark = pytest.mark.anyio


@pytest.fixture
def upstream() -> Iterator[AgentFactoryApi]:
    with AgentFactoryApi() as api:
        yield api
    assert api.violations == [], "requests differed from what upstream's worker sends"


@pytest.fixture
async def store(upstream: AgentFactoryApi) -> AsyncIterator[AgentFactoryCompatStore]:
    store = AgentFactoryCompatStore(upstream.url, wait_poll_s=0.01)
    yield store
    await store.aclose()


def message(text: str = "hi", **payload: str) -> EnqueueRequest:
    return EnqueueRequest(
        conversation_id="telegram:1",
        agent_key="default",
        payload=MessagePayload(provider="telegram", provider_user_id="42", message_text=text, **payload),  # type: ignore[arg-type]
    )


async def test_compat_mode_is_chosen_by_the_settings_and_plays_the_worker_role(upstream: AgentFactoryApi) -> None:
    settings = StoreSettings(store=upstream.url, convex_compat="agent-factory-3.1")
    store = open_store(settings)
    roles = (WorkerStore, EnqueueStore, FleetStore, OperatorStore)
    assert [role.__name__ for role in roles if isinstance(store, role)] == ["WorkerStore", "EnqueueStore"]
    await store.aclose()
    with pytest.raises(InvalidInput, match="auth_token"):
        AgentFactoryCompatStore(upstream.url, auth_token="jwt")
    with pytest.raises(InvalidInput, match="FACTORY_CONVEX_COMPAT"):
        AgentFactoryCompatStore(upstream.url, compat="agent-factory-9")  # type: ignore[arg-type]


async def test_a_whole_job_in_upstream_shapes(store: AgentFactoryCompatStore, upstream: AgentFactoryApi) -> None:
    message_id = await store.enqueue(message("hello", external_message_id="tg-1", raw_update_json="{}"))
    record = await store.worker_register(WorkerRegistration(worker_id="w1", provider="fly"))
    assert record.status == "active"  # a no-op: upstream registers by claiming
    job = await store.worker_claim("w1", "telegram:1")
    assert job is not None
    assert (job.message_id, job.attempt, job.payload.message_text) == (message_id, 1, "hello")
    lease = LeaseRef(worker_id="w1", message_id=job.message_id, lease_id=job.lease_id)
    assert (await store.worker_heartbeat(lease)).ok
    bundle = await store.worker_hydration_bundle(job.message_id)
    assert bundle is not None
    assert bundle.telegram_bot_token is not None
    assert bundle.telegram_bot_token.get_secret_value() == "bot-token-default"
    assert bundle.profile.agent_key == "default"
    turns = [HistoryMessage(role="user", content="hello"), HistoryMessage(role="assistant", content="hey", at=5)]
    appended = await store.worker_append_conversation_messages(
        AppendRequest(conversation_id="telegram:1", messages=turns, message_id=job.message_id)
    )
    assert (appended.updated, appended.message_count) == (True, 2)
    assert (await store.worker_control_state("w1")).should_stop is False
    assert (await store.worker_complete(lease)).ok
    replay = await store.worker_complete(lease)  # upstream reports a replay as a lost lease
    assert (replay.ok, replay.refused) == (False, "lease_lost")
    assert [name for name, _ in upstream.calls] == [
        "enqueue",
        "workerClaim",
        "workerHeartbeat",
        "workerHydrationBundle",
        "workerAppendConversationMessages",
        "workerControlState",
        "workerComplete",
        "workerComplete",
    ]
    enqueue_args = upstream.calls[0][1]
    assert enqueue_args == {
        "conversationId": "telegram:1",
        "agentKey": "default",
        "provider": "telegram",
        "providerUserId": "42",
        "messageText": "hello",
        "externalMessageId": "tg-1",
        "rawUpdateJson": "{}",
        "priority": 50,
    }
    assert upstream.calls[4][1] == {
        "conversationId": "telegram:1",
        "workspaceId": "default",
        "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hey", "at": 5}],
    }
    bundle = await store.worker_hydration_bundle(job.message_id)
    assert bundle is None  # no longer processing


async def test_fail_uses_upstream_args_and_result(store: AgentFactoryCompatStore, upstream: AgentFactoryApi) -> None:
    await store.enqueue(message())
    job = await store.worker_claim("w1")
    assert job is not None
    lease = LeaseRef(worker_id="w1", message_id=job.message_id, lease_id=job.lease_id)
    fail = FailRequest(lease=lease, error_message="boom", retryable=False)
    result = await store.worker_fail(fail)
    assert result.requeued and not result.dead_lettered
    assert result.next_scheduled_for is not None
    assert upstream.calls[-1] == (
        "workerFail",
        {"workerId": "w1", "messageId": job.message_id, "leaseId": job.lease_id, "errorMessage": "boom"},
    )
    replay = await store.worker_fail(fail)
    assert (replay.requeued, replay.dead_lettered, replay.next_scheduled_for) == (False, False, None)
    assert replay.refused == "lease_lost"


async def test_a_release_sends_nothing_upstream_has_no_such_function(
    store: AgentFactoryCompatStore, upstream: AgentFactoryApi
) -> None:
    await store.enqueue(message())
    job = await store.worker_claim("w1")
    assert job is not None
    calls = len(upstream.calls)
    lease = LeaseRef(worker_id="w1", message_id=job.message_id, lease_id=job.lease_id)
    released = await store.worker_release(ReleaseRequest(lease=lease, reason="gateway down"))
    # Accepted: upstream re-queues the message when its lease runs out, and counts no attempt for that.
    assert released.ok
    assert upstream.calls[calls:] == []


async def test_control_is_not_asked_before_the_first_claim(
    store: AgentFactoryCompatStore, upstream: AgentFactoryApi
) -> None:
    """Upstream answers "stop" for a worker without a row, and rows appear with the first claim."""
    assert (await store.worker_control_state("never-claimed")).should_stop is False
    assert upstream.calls == []
    await store.enqueue(message())
    assert await store.worker_claim("never-claimed") is not None
    await store.worker_control_state("never-claimed")
    assert upstream.calls[-1][0] == "workerControlState"


async def test_upstream_errors_are_function_errors(store: AgentFactoryCompatStore) -> None:
    with pytest.raises(StoreFunctionError, match=r"agentFactory:enqueue failed: .*not found or disabled"):
        await store.enqueue(
            EnqueueRequest(
                conversation_id="c",
                agent_key="ghost",
                payload=MessagePayload(provider="t", provider_user_id="u", message_text="x"),
            )
        )


async def test_what_upstream_cannot_express_is_refused_before_sending(store: AgentFactoryCompatStore) -> None:
    with pytest.raises(InvalidInput, match="scheduledFor"):
        await store.enqueue(message().model_copy(update={"scheduled_for": 5}))
    with pytest.raises(InvalidInput, match="maxAttempts"):
        await store.enqueue(message().model_copy(update={"max_attempts": 2}))


async def test_a_role_upstream_lacks_is_refused_once_before_anything_runs(upstream: AgentFactoryApi) -> None:
    settings = StoreSettings(store=upstream.url, convex_compat="agent-factory-3.1")
    with pytest.raises(UnsupportedByCompat, match=r"agent-factory 3\.1 has no fleet functions"):
        open_full_store(settings, role="fleet")
    assert upstream.calls == []


async def test_waiting_is_a_plain_poll(store: AgentFactoryCompatStore) -> None:
    assert await store.wait_for_work(5) is False  # sleeps one poll interval (10 ms here)
    assert await store.now_ms() > 1_700_000_000_000


async def test_the_one_call_hot_path_is_emulated_with_upstreams_separate_calls(
    store: AgentFactoryCompatStore, upstream: AgentFactoryApi
) -> None:
    await store.enqueue(message("first"))
    await store.enqueue(message("second"))
    claimed = await store.worker_claim("w1", with_bundle=True)
    assert claimed.job is not None and claimed.bundle is not None and not claimed.control.should_stop
    assert claimed.bundle.message_id == claimed.job.message_id
    lease = LeaseRef(worker_id="w1", message_id=claimed.job.message_id, lease_id=claimed.job.lease_id)
    turns = [HistoryMessage(role="user", content="first"), HistoryMessage(role="assistant", content="ok")]
    done = await store.worker_complete(lease, history=turns, claim_next=NextClaim())
    assert done.ok and done.control is None  # upstream's complete says nothing about stopping
    assert done.appended is not None and done.appended.updated
    assert done.next is not None and done.next.job is not None and done.next.bundle is not None
    assert done.next.job.payload.message_text == "second"
