"""WsDelivery against a scripted stand-in: every failure the real gateway cannot produce on cue."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection

from tests.gateway.fake_gateway import TOKEN, answer_echo, fake_gateway, final_ok, res
from worker.delivery import DeliveryRequest
from worker.errors import (
    DeliveryAuthError,
    DeliveryConfigError,
    DeliveryProtocolError,
    DeliveryRejected,
    DeliveryServerError,
    DeliveryTimeout,
    DeliveryUnavailable,
)
from worker.openclaw.ws import WsDelivery

pytestmark = pytest.mark.anyio


def request(message_id: str = "m-1", session: str = "agent:main:conv-a", text: str = "hi") -> DeliveryRequest:
    return DeliveryRequest(message_id=message_id, session_key=session, text=text)


async def test_reply_comes_from_the_final_frame_after_accepted_and_events() -> None:
    async with fake_gateway() as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        reply = await delivery.deliver(request(text="hello"))
    assert reply.text == "echo: hello"
    assert reply.run_id == "m-1"
    sent = gateway.requests[0]
    assert sent["method"] == "agent"
    assert sent["params"] == {
        "message": "hello",
        "agentId": "main",
        "sessionKey": "agent:main:conv-a",
        "idempotencyKey": "m-1",
    }
    assert delivery.protocol == 4


async def test_one_connection_serves_many_requests_answered_out_of_order() -> None:
    held: list[tuple[ServerConnection, dict[str, Any]]] = []

    async def answer_in_reverse(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        held.append((ws, req))
        if len(held) == 3:
            for held_ws, held_req in reversed(held):
                await held_ws.send(final_ok(held_req, "for " + held_req["params"]["message"]))

    replies: dict[str, str] = {}
    async with fake_gateway(answer_in_reverse) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:

        async def one(n: int) -> None:
            reply = await delivery.deliver(request(f"m-{n}", f"agent:main:conv-{n}", f"text {n}"))
            replies[f"text {n}"] = reply.text

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(one, n)
    assert replies == {f"text {n}": f"for text {n}" for n in range(3)}
    assert gateway.connections == 1


async def test_turns_of_one_session_never_overlap() -> None:
    in_flight = 0
    peak = 0

    async def slow_answer(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.05)
        in_flight -= 1
        await ws.send(final_ok(req, req["params"]["message"]))

    order: list[str] = []
    async with fake_gateway(slow_answer) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:

        async def one(n: int) -> None:
            order.append((await delivery.deliver(request(f"m-{n}", "agent:main:conv-same", f"{n}"))).text)

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(one, n)
                await anyio.sleep(0.01)  # arrival order
    assert peak == 1
    assert order == ["0", "1", "2"]


async def test_wrong_token_is_an_auth_error_that_does_not_leak_the_token() -> None:
    wrong = "wrong-token-must-not-leak-42"
    async with fake_gateway() as gateway, WsDelivery(gateway.url, wrong, timeout_s=5) as delivery:
        with pytest.raises(DeliveryAuthError) as caught:
            await delivery.deliver(request())
    assert "AUTH_TOKEN_MISMATCH" in str(caught.value)
    assert wrong not in str(caught.value)
    assert wrong not in repr(caught.value)
    assert not caught.value.retryable


async def test_gateway_text_echoing_the_token_is_redacted() -> None:
    async def leaky(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        await ws.send(res(req, ok=False, error={"code": "INVALID_REQUEST", "message": f"bad token {TOKEN}"}))

    async with fake_gateway(leaky) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryRejected) as caught:
            await delivery.deliver(request())
    assert TOKEN not in str(caught.value)
    assert "***" in str(caught.value)


async def test_still_starting_gateway_is_retried_until_it_lets_us_in() -> None:
    async with (
        fake_gateway(refuse_connects=2) as gateway,
        WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery,
    ):
        assert (await delivery.deliver(request(text="late"))).text == "echo: late"
    assert gateway.connections == 3


async def test_protocol_mismatch_is_a_config_error_that_waiting_cannot_fix() -> None:
    mismatch = {
        "code": "INVALID_REQUEST",
        "message": "protocol mismatch",
        "details": {"code": "PROTOCOL_MISMATCH", "expectedProtocol": 5},
    }
    async with (
        fake_gateway(connect_error=mismatch, refuse_connects=1) as gateway,
        WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery,
    ):
        with pytest.raises(DeliveryConfigError, match="wants 5") as raised:
            await delivery.deliver(request())
    assert not raised.value.retryable and raised.value.fault == "infrastructure"


async def test_garbage_frame_is_a_protocol_error() -> None:
    async def garbage(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        await ws.send("this is not json")

    async with fake_gateway(garbage) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryProtocolError, match="not JSON"):
            await delivery.deliver(request())


async def test_final_frame_without_a_result_shape_is_a_protocol_error() -> None:
    async def odd(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        await ws.send(res(req, payload={"runId": "x", "result": {"payloads": "nope"}}))

    async with fake_gateway(odd) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryProtocolError, match="malformed"):
            await delivery.deliver(request())


async def test_dropped_connection_fails_the_turn_and_the_next_one_reconnects() -> None:
    async def drop_first(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        if connection == 0:
            await ws.send(res(req, payload={"runId": "m-1", "status": "accepted"}))
            await ws.close(1012, "service restart")
            return
        await answer_echo(ws, req, connection)

    async with fake_gateway(drop_first) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryUnavailable, match="1012"):
            await delivery.deliver(request())
        assert (await delivery.deliver(request(text="again"))).text == "echo: again"
    assert gateway.connections == 2


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": "UNAVAILABLE", "message": "provider down"}, DeliveryServerError),
        ({"code": "INVALID_REQUEST", "message": 'unknown agent id "x"'}, DeliveryRejected),
        (
            {"code": "INVALID_REQUEST", "message": 'Session "k" changed while starting work. Retry.'},
            DeliveryServerError,
        ),
        ({"code": "FORBIDDEN", "message": "missing scope: operator.write"}, DeliveryAuthError),
        ({"code": "SOMETHING_NEW", "message": "?", "retryable": True}, DeliveryServerError),
    ],
)
async def test_error_frames_map_to_typed_errors(error: dict[str, Any], expected: type[Exception]) -> None:
    async def fail(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        await ws.send(res(req, ok=False, error=error))

    async with fake_gateway(fail) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(expected):
            await delivery.deliver(request())


async def test_failed_run_is_retried_under_a_fresh_idempotency_key() -> None:
    async def fail_first(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        key = req["params"]["idempotencyKey"]
        if key == "m-1":
            payload = {"runId": key, "status": "error", "summary": "model failed"}
            await ws.send(res(req, ok=False, payload=payload, error={"code": "UNAVAILABLE", "message": "x"}))
        else:
            await ws.send(final_ok(req, "ok on " + key))

    async with fake_gateway(fail_first) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryServerError):
            await delivery.deliver(request())
        assert (await delivery.deliver(request())).text == "ok on m-1~1"
        assert (await delivery.deliver(request())).text == "ok on m-1~1"  # success: key stays


async def test_silent_gateway_times_out() -> None:
    async def never(ws: ServerConnection, req: dict[str, Any], connection: int) -> None:
        await ws.send(res(req, payload={"runId": "m-1", "status": "accepted"}))

    async with fake_gateway(never) as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=0.3) as delivery:
        with pytest.raises(DeliveryTimeout, match=r"within 0\.3 s"):
            await delivery.deliver(request())


async def test_nothing_listening_is_unavailable() -> None:
    async with fake_gateway() as gateway:
        url = gateway.url  # the port is closed once the fake stops
    async with WsDelivery(url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryUnavailable, match="cannot connect"):
            await delivery.deliver(request())


async def test_empty_text_is_rejected_without_a_round_trip() -> None:
    async with fake_gateway() as gateway, WsDelivery(gateway.url, TOKEN, timeout_s=5) as delivery:
        with pytest.raises(DeliveryRejected, match="no text"):
            await delivery.deliver(request(text="  "))
    assert gateway.requests == []


async def test_deliver_outside_async_with_says_how_to_use_it() -> None:
    delivery = WsDelivery("ws://127.0.0.1:9/", TOKEN)
    with pytest.raises(RuntimeError, match="async with"):
        await delivery.deliver(request())
