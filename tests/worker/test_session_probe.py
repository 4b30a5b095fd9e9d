"""Does the gateway hold a conversation's session? Asked of the real gateway, over WebSocket and HTTP."""

from __future__ import annotations

import pytest

from tests.gateway_fixture import OpenClawGateway
from worker.delivery import DeliveryRequest
from worker.openclaw.http import HttpDelivery
from worker.openclaw.sessions import session_key
from worker.openclaw.ws import WsDelivery

pytestmark = [pytest.mark.anyio, pytest.mark.gateway]


async def test_a_session_exists_once_its_first_turn_ran(openclaw_gateway: OpenClawGateway) -> None:
    key = session_key("main", "probe-conversation")
    async with WsDelivery(openclaw_gateway.ws_url, openclaw_gateway.token, timeout_s=120) as ws:
        http = HttpDelivery(openclaw_gateway.url, openclaw_gateway.token, timeout_s=120)
        try:
            assert await ws.has_session("main", key) is False
            assert await http.has_session("main", key) is False
            await ws.deliver(DeliveryRequest(message_id="probe-1", session_key=key, agent_id="main", text="hi"))
            assert await ws.has_session("main", key) is True
            assert await http.has_session("main", key) is True
        finally:
            await http.aclose()
