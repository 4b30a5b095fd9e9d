"""HttpDelivery against the real OpenClaw gateway (stub model), on loopback."""

from __future__ import annotations

import socket
import uuid

import pytest

from tests.gateway_fixture import OpenClawGateway
from worker.delivery import DeliveryRequest
from worker.errors import DeliveryAuthError, DeliveryRejected, DeliveryTimeout, DeliveryUnavailable
from worker.openclaw.http import PROBE_TEXT, HttpDelivery
from worker.openclaw.sessions import session_key

pytestmark = pytest.mark.anyio


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def turn(text: str, conversation: str, *, agent: str = "main", message_id: str | None = None) -> DeliveryRequest:
    return DeliveryRequest(
        message_id=message_id or unique("msg"),
        session_key=session_key(agent, conversation),
        agent_id=agent,
        text=text,
    )


@pytest.mark.gateway
async def test_reply_and_history_over_http(openclaw_gateway: OpenClawGateway) -> None:
    conversation = unique("conv")
    first, second = unique("first http"), unique("second http")
    async with HttpDelivery(openclaw_gateway.url, openclaw_gateway.token, timeout_s=60) as delivery:
        assert (await delivery.deliver(turn(first, conversation, agent="alpha"))).text == f"STUB-REPLY: {first}"
        reply = await delivery.deliver(turn(second, conversation, agent="alpha"))
    assert reply.text == f"STUB-REPLY: {second}"
    assert reply.run_id
    [call] = openclaw_gateway.calls_for(second)
    assert first in " ".join(t["text"] for t in call["turns"])


@pytest.mark.gateway
async def test_http_route_is_not_idempotent(openclaw_gateway: OpenClawGateway) -> None:
    # Documented behaviour, pinned here so a gateway upgrade that adds idempotency is noticed.
    text = unique("twice")
    request = turn(text, unique("conv"))
    async with HttpDelivery(openclaw_gateway.url, openclaw_gateway.token, timeout_s=60) as delivery:
        await delivery.deliver(request)
        await delivery.deliver(request)
    assert len(openclaw_gateway.calls_for(text)) == 2


@pytest.mark.gateway
async def test_wrong_token_is_an_auth_error_without_the_token(openclaw_gateway: OpenClawGateway) -> None:
    wrong = "not-the-gateway-token-" + uuid.uuid4().hex
    async with HttpDelivery(openclaw_gateway.url, wrong, timeout_s=30) as delivery:
        with pytest.raises(DeliveryAuthError, match="HTTP 401") as caught:
            await delivery.deliver(turn("hi", unique("conv")))
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)


@pytest.mark.gateway
async def test_unknown_agent_is_rejected(openclaw_gateway: OpenClawGateway) -> None:
    async with HttpDelivery(openclaw_gateway.url, openclaw_gateway.token, timeout_s=30) as delivery:
        with pytest.raises(DeliveryRejected, match="HTTP 400"):
            await delivery.deliver(turn("hi", unique("conv"), agent="nobody"))


@pytest.mark.gateway
async def test_slow_model_times_out(openclaw_gateway: OpenClawGateway) -> None:
    async with HttpDelivery(openclaw_gateway.url, openclaw_gateway.token, timeout_s=0.5) as delivery:
        with pytest.raises(DeliveryTimeout) as caught:
            await delivery.deliver(turn(unique("SLOW:1500 slow http"), unique("conv")))
    assert openclaw_gateway.token.get_secret_value() not in str(caught.value)


async def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with HttpDelivery(f"http://127.0.0.1:{port}", "some-token-value", timeout_s=5) as delivery:
        with pytest.raises(DeliveryUnavailable, match="unreachable") as caught:
            await delivery.deliver(turn("hi", "conv"))
    assert "some-token-value" not in str(caught.value)


@pytest.mark.gateway
async def test_probes_tell_a_usable_gateway_and_agent_from_a_refused_token(openclaw_gateway: OpenClawGateway) -> None:
    async with HttpDelivery(openclaw_gateway.url, openclaw_gateway.token, timeout_s=60) as delivery:
        probes = openclaw_gateway.calls_saying(PROBE_TEXT)
        await delivery.probe()  # reachable and the token accepted: no model call for that
        assert openclaw_gateway.calls_saying(PROBE_TEXT) == probes
        await delivery.probe("alpha")  # and the agent runs a turn
        assert openclaw_gateway.calls_saying(PROBE_TEXT) == probes + 1
    async with HttpDelivery(openclaw_gateway.url, "not-the-token", timeout_s=60) as refused:
        with pytest.raises(DeliveryAuthError):
            await refused.probe()
