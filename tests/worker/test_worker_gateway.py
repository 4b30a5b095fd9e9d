"""The worker against a REAL OpenClaw gateway (stub LLM on loopback), in this process."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from bench.counted_store import CountedStore
from contracts.clock import ManualClock
from contracts.convex import ConvexStore
from contracts.convex.standin import StandIn
from contracts.models import LeaseRef
from contracts.push import PushDispatchRequest, PushJob, PushTemplate, Schedule
from contracts.roles import OperatorStore
from contracts.sqlite import SqliteStore
from tests.contract.helpers import TEST_BOX
from tests.fakes.telegram_api import run_telegram_fake
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import build_worker, eventually, message
from worker.delivery import DeliveryRequest
from worker.metrics import WorkerMetrics
from worker.openclaw.sessions import session_key
from worker.openclaw.ws import WsDelivery
from worker.outage import OutagePolicy, OutageTooLong
from worker.telegram import TelegramChannel

pytestmark = [pytest.mark.anyio, pytest.mark.gateway]
BOT_TOKEN = "4242:test-bot-token"


def _count(metrics: WorkerMetrics, name: str) -> float:
    return metrics.registry.get_sample_value(f"factory_worker_{name}_total") or 0.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "w.db", clock=ManualClock(), rng=random.Random(1), secrets_box=TEST_BOX)
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def delivery(openclaw_gateway: OpenClawGateway) -> AsyncIterator[WsDelivery]:
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as d:
        yield d


async def test_a_message_is_delivered_and_the_reply_lands_in_history(
    store: SqliteStore, delivery: WsDelivery, openclaw_gateway: OpenClawGateway
) -> None:
    message_id = await store.enqueue(message("w-hist", "hello history"))
    worker, _ = build_worker(store, delivery, once=True)
    exit_ = await worker.run()
    assert (exit_.reason, exit_.processed) == ("once", 1)
    record = await store.get_message(message_id)
    assert record is not None and record.status == "done"
    conversation = await store.get_conversation("w-hist")
    assert conversation is not None
    assert [(m.role, m.content) for m in conversation.history] == [
        ("user", "hello history"),
        ("assistant", "STUB-REPLY: hello history"),
    ]
    assert len(openclaw_gateway.calls_for("hello history")) == 1


async def test_two_messages_in_a_conversation_keep_their_order(
    store: SqliteStore, delivery: WsDelivery, openclaw_gateway: OpenClawGateway
) -> None:
    await store.enqueue(message("w-order", "first of two"))
    await store.enqueue(message("w-order", "second of two"))
    worker, _ = build_worker(store, delivery, idle_exit_s=0.3)
    exit_ = await worker.run()
    assert exit_.processed == 2
    conversation = await store.get_conversation("w-order")
    assert conversation is not None
    assert [m.content for m in conversation.history] == [
        "first of two",
        "STUB-REPLY: first of two",
        "second of two",
        "STUB-REPLY: second of two",
    ]
    [second_call] = openclaw_gateway.calls_for("second of two")
    # The gateway keeps the session: the second turn was sent with the first in its history.
    assert "first of two" in str(second_call["turns"])


@pytest.mark.parametrize("binding", ["sqlite", pytest.param("convex", marks=pytest.mark.convex)])
async def test_a_busy_worker_makes_one_store_call_per_message(
    binding: str, tmp_path: Path, delivery: WsDelivery, request: pytest.FixtureRequest
) -> None:
    """A claim with its bundle, then one complete per message that carries the history and claims
    the next job (heartbeats aside); on Convex, each call is one function execution."""
    standin: StandIn | None = None
    real: SqliteStore | ConvexStore
    if binding == "sqlite":
        real = SqliteStore(tmp_path / "calls.db", secrets_box=TEST_BOX)
    else:
        standin = request.getfixturevalue("convex_standin")
        standin.reset(env={"FACTORY_AUTH": "open"})
        real = ConvexStore(standin.url)
    try:
        for i in range(4):
            await real.enqueue(message(f"busy-{i % 2}", f"busy message {i}"))
        executions = 0 if standin is None else sum(standin.calls().values())
        store = CountedStore(real)
        worker, _ = build_worker(store, delivery, idle_exit_s=1e-6)  # leaves at the first empty answer
        assert (await worker.run()).processed == 4
        # Start-up (the store check, registering), one claim, then one complete per message: the
        # last complete's empty next answer is the empty claim the worker leaves on.
        calls = [name for name in store.calls if name != "worker_heartbeat"]
        assert calls == ["now_ms", "worker_register", "worker_claim", *["worker_complete"] * 4]
        if standin is not None:
            assert sum(standin.calls().values()) - executions == len(store.calls)
        assert isinstance(real, OperatorStore)
        conversation = await real.get_conversation("busy-0")
        assert conversation is not None
        # The history came with the completes. (Only the user turns are compared: the stand-in hands
        # out the same message ids after every reset, and the session's one gateway remembers replies
        # by those ids, so an earlier Convex test's reply can come back here. Real deployments' ids
        # are unique.)
        history = [
            (m.role, m.content if m.role == "user" else m.content.startswith("STUB-REPLY: "))
            for m in conversation.history
        ]
        assert history == [
            ("user", "busy message 0"),
            ("assistant", True),
            ("user", "busy message 2"),
            ("assistant", True),
        ]
    finally:
        await real.aclose()


async def test_a_redelivery_with_the_same_message_id_does_not_call_the_model_twice(
    store: SqliteStore, delivery: WsDelivery, openclaw_gateway: OpenClawGateway
) -> None:
    message_id = await store.enqueue(message("w-idem", "exactly once please"))
    # A first worker claims and delivers, then dies before completing.
    job = await store.worker_claim("crashed")
    assert job is not None
    await delivery.deliver(
        DeliveryRequest(
            message_id=job.message_id,
            session_key=session_key("main", job.conversation_id),
            text=job.payload.message_text,
        )
    )
    assert len(openclaw_gateway.calls_for("exactly once please")) == 1
    assert isinstance(store.clock, ManualClock)
    store.clock.advance(60_000)
    worker, _ = build_worker(store, delivery, worker_id="w2", once=True)
    assert (await worker.run()).processed == 1
    record = await store.get_message(message_id)
    assert record is not None and record.status == "done" and record.attempts == 2
    assert len(openclaw_gateway.calls_for("exactly once please")) == 1
    conversation = await store.get_conversation("w-idem")
    assert conversation is not None and conversation.history[-1].content == "STUB-REPLY: exactly once please"


async def test_lease_loss_mid_delivery_cancels_the_job_and_sends_nothing(
    store: SqliteStore, delivery: WsDelivery, openclaw_gateway: OpenClawGateway
) -> None:
    async with (
        run_telegram_fake(tokens=[BOT_TOKEN]) as telegram_api,
        TelegramChannel(api_base=telegram_api.url) as telegram,
    ):
        await store.import_secret("telegram.botToken.default", SecretStr(BOT_TOKEN))
        message_id = await store.enqueue(message("w-lost", "SLOW:6000 lose my lease", provider="telegram", user="77"))
        # A 3 s lease (the store's, set for every process on the file): the worker heartbeats
        # every second, so the loss is noticed long before the slow reply arrives.
        await SqliteStore(store.path, lease_ttl_ms=3_000, secrets_box=TEST_BOX).aclose()
        worker, metrics = build_worker(store, delivery, telegram=telegram)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)

            async def delivering() -> bool:
                return len(openclaw_gateway.calls_for("lose my lease")) == 1

            await eventually(delivering, what="the model call")
            # The store's clock jumps past the lease and another worker takes the message over.
            assert isinstance(store.clock, ManualClock)
            store.clock.advance(60_000)
            thief = await store.worker_claim("w-thief")
            assert thief is not None and thief.message_id == message_id

            async def noticed() -> bool:
                return _count(metrics, "lease_losses") == 1

            await eventually(noticed, timeout_s=10, what="the lease loss")
            worker.request_stop()
        record = await store.get_message(message_id)
        assert record is not None and record.status == "processing" and record.claimed_by == "w-thief"
        assert telegram_api.messages == []
        conversation = await store.get_conversation("w-lost")
        assert conversation is not None and conversation.history == []
        assert _count(metrics, "completes") == 0
        assert thief is not None
        lease = LeaseRef(worker_id="w-thief", message_id=message_id, lease_id=thief.lease_id)
        assert (await store.worker_complete(lease)).ok


async def test_a_telegram_message_is_answered_on_telegram(
    store: SqliteStore, delivery: WsDelivery, openclaw_gateway: OpenClawGateway
) -> None:
    async with (
        run_telegram_fake(tokens=[BOT_TOKEN]) as telegram_api,
        TelegramChannel(api_base=telegram_api.url) as telegram,
    ):
        await store.import_secret("telegram.botToken.default", SecretStr(BOT_TOKEN))
        await store.enqueue(message("telegram:555", "<b>tags</b> & all", provider="telegram", user="555"))
        worker, _ = build_worker(store, delivery, telegram=telegram, once=True)
        assert (await worker.run()).processed == 1
        assert telegram_api.texts("555") == ["STUB-REPLY: <b>tags</b> & all"]


async def test_a_push_in_a_telegram_conversation_is_sent_to_that_chat(
    store: SqliteStore, delivery: WsDelivery, openclaw_gateway: OpenClawGateway
) -> None:
    async with (
        run_telegram_fake(tokens=[BOT_TOKEN]) as telegram_api,
        TelegramChannel(api_base=telegram_api.url) as telegram,
    ):
        await store.import_secret("telegram.botToken.default", SecretStr(BOT_TOKEN))
        await store.push_template_put(PushTemplate(template_id="t", agent_key="default", text="daily check-in"))
        await store.enqueue(message("telegram:777", "hello", provider="telegram", user="777"))
        now = await store.now_ms()
        job = await store.push_job_put(
            PushJob(
                job_id="j",
                template_id="t",
                conversation_id="telegram:777",
                schedule=Schedule(kind="daily", at="09:00"),
                next_run_at=now,
            )
        )
        worker, _ = build_worker(store, delivery, telegram=telegram, once=True)
        assert (await worker.run()).processed == 1  # the user's own message first
        request = PushDispatchRequest(
            job_id="j", run_key=f"job:j:{now}", slot_at=now, expected_next_run_at=job.next_run_at, next_run_at=now + 1
        )
        assert (await store.push_dispatch(request)).status == "enqueued"
        worker, _ = build_worker(store, delivery, telegram=telegram, once=True)
        assert (await worker.run()).processed == 1
        assert telegram_api.texts("777") == ["STUB-REPLY: hello", "STUB-REPLY: daily check-in"]


async def test_a_gateway_that_never_comes_up_is_waited_for_then_given_up_on_untouched(store: SqliteStore) -> None:
    message_id = await store.enqueue(message("w-down", "nobody home"))
    async with WsDelivery("ws://127.0.0.1:9", "token", timeout_s=5) as closed:
        worker, metrics = build_worker(store, closed, once=True, outage_policy=OutagePolicy(max_outage_s=0.5))
        with pytest.raises(OutageTooLong, match=r"gateway stayed unavailable for 0\.5 s") as raised:
            await worker.run()
    assert "127.0.0.1:9" in str(raised.value)
    assert "gateway: cannot connect to gateway ws://127.0.0.1:9" in " ".join(worker.readiness.reasons())
    record = await store.get_message(message_id)
    # Nothing was claimed: the gateway was checked first.
    assert record is not None and (record.status, record.attempts, record.last_error) == ("queued", 0, None)
    assert _count(metrics, "claims") == 0
