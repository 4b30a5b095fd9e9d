"""WsDelivery against the real OpenClaw gateway (stub model), on loopback."""

from __future__ import annotations

import uuid

import anyio
import pytest

from tests.gateway_fixture import OpenClawGateway
from worker.delivery import DeliveryRequest
from worker.errors import DeliveryAuthError, DeliveryRejected, DeliveryServerError, DeliveryTimeout
from worker.openclaw.sessions import session_key
from worker.openclaw.ws import PROBE_TEXT, WsDelivery

pytestmark = [pytest.mark.anyio, pytest.mark.gateway]


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def turn(text: str, conversation: str, *, agent: str = "main", message_id: str | None = None) -> DeliveryRequest:
    return DeliveryRequest(
        message_id=message_id or unique("msg"),
        session_key=session_key(agent, conversation),
        agent_id=agent,
        text=text,
    )


async def test_reply_is_the_models_answer(openclaw_gateway: OpenClawGateway) -> None:
    text = unique("hello ws")
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        request = turn(text, unique("conv"))
        reply = await delivery.deliver(request)
    assert reply.text == f"STUB-REPLY: {text}"
    assert reply.run_id == request.message_id
    assert delivery.protocol == 4


async def test_one_session_keeps_order_and_history(openclaw_gateway: OpenClawGateway) -> None:
    conversation = unique("conv")
    first, second = unique("first"), unique("second")
    replies: list[str] = []
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:

        async def send(text: str) -> None:
            replies.append((await delivery.deliver(turn(text, conversation))).text)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, first)
            await anyio.sleep(0.05)  # both in flight: the second waits for the session
            tg.start_soon(send, second)
    assert replies == [f"STUB-REPLY: {first}", f"STUB-REPLY: {second}"]
    [call] = openclaw_gateway.calls_for(second)
    history = " ".join(t["text"] for t in call["turns"])
    assert first in history
    assert f"STUB-REPLY: {first}" in history


async def test_agents_and_sessions_run_side_by_side_on_one_connection(openclaw_gateway: OpenClawGateway) -> None:
    texts = {agent: unique(f"to {agent}") for agent in openclaw_gateway.agents}
    replies: dict[str, str] = {}
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:

        async def send(agent: str) -> None:
            replies[agent] = (await delivery.deliver(turn(texts[agent], unique("conv"), agent=agent))).text

        async with anyio.create_task_group() as tg:
            for agent in texts:
                tg.start_soon(send, agent)
    assert replies == {agent: f"STUB-REPLY: {text}" for agent, text in texts.items()}


async def test_redelivery_of_a_message_does_not_run_the_model_again(openclaw_gateway: OpenClawGateway) -> None:
    text = unique("once")
    request = turn(text, unique("conv"))
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        first = await delivery.deliver(request)
    # Another worker's attempt: a new connection, the same message id.
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        again = await delivery.deliver(request)
    assert again.text == first.text == f"STUB-REPLY: {text}"
    assert len(openclaw_gateway.calls_for(text)) == 1


async def test_timeout_then_redelivery_waits_for_the_first_run(openclaw_gateway: OpenClawGateway) -> None:
    text = unique("SLOW:2500 patient")
    request = turn(text, unique("conv"))
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=0.5) as impatient:
        with pytest.raises(DeliveryTimeout) as caught:
            await impatient.deliver(request)
    assert openclaw_gateway.token.get_secret_value() not in str(caught.value)
    # The gateway keeps running the first attempt; the retry joins it instead of starting another.
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        reply = await delivery.deliver(request)
    assert reply.text == f"STUB-REPLY: {text}"
    assert len(openclaw_gateway.calls_for(text)) == 1


async def test_failed_run_is_retried_not_replayed(openclaw_gateway: OpenClawGateway) -> None:
    # The stub answers FAIL:400 with HTTP 400; the gateway reports the run failed (and caches that).
    text = unique("FAIL:400 broken")
    request = turn(text, unique("conv"), agent="alpha")
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        for _ in range(2):
            with pytest.raises(DeliveryServerError):
                await delivery.deliver(request)
    assert len(openclaw_gateway.calls_for(text)) == 2


async def test_unknown_agent_is_rejected(openclaw_gateway: OpenClawGateway) -> None:
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        with pytest.raises(DeliveryRejected, match="unknown agent"):
            await delivery.deliver(turn("hi", unique("conv"), agent="nobody"))


async def test_wrong_token_is_an_auth_error_without_the_token(openclaw_gateway: OpenClawGateway) -> None:
    wrong = "not-the-gateway-token-" + uuid.uuid4().hex
    async with WsDelivery(openclaw_gateway.ws_url, wrong, timeout_s=30) as delivery:
        with pytest.raises(DeliveryAuthError) as caught:
            await delivery.deliver(turn("hi", unique("conv")))
    assert wrong not in str(caught.value)
    assert openclaw_gateway.token.get_secret_value() not in str(caught.value)


async def test_case_distinct_conversations_get_separate_sessions(openclaw_gateway: OpenClawGateway) -> None:
    base = unique("Chat")
    upper, lower = unique("upper says"), unique("lower says")
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        await delivery.deliver(turn(upper, base))
        await delivery.deliver(turn(lower, base.lower()))
    [call] = openclaw_gateway.calls_for(lower)
    assert upper not in " ".join(t["text"] for t in call["turns"])


@pytest.mark.gateway
async def test_ws_probes_tell_a_usable_gateway_and_agent_from_a_refused_token(
    openclaw_gateway: OpenClawGateway,
) -> None:
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=60) as delivery:
        probes = openclaw_gateway.calls_saying(PROBE_TEXT)
        await delivery.probe()
        assert openclaw_gateway.calls_saying(PROBE_TEXT) == probes
        await delivery.probe("alpha")
        assert openclaw_gateway.calls_saying(PROBE_TEXT) == probes + 1
    async with WsDelivery(openclaw_gateway.ws_url, "not-the-token", timeout_s=60) as refused:
        with pytest.raises(DeliveryAuthError):
            await refused.probe()
