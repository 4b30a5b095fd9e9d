"""The gateway config's tool policy, on the real gateway: an agent talked into running commands or
reading files outside its workspace gets nothing (gateway.config's default: no host exec)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from gateway.config import CompatibleModel
from gateway.install import ensure_openclaw
from gateway.runtime import GatewayRuntime
from tests.gateway_fixture import OpenClawGateway
from worker.delivery import DeliveryRequest
from worker.openclaw.http import HttpDelivery
from worker.openclaw.sessions import session_key

pytestmark = pytest.mark.gateway


async def _turn(gateway: OpenClawGateway, text: str) -> str:
    request = DeliveryRequest(
        message_id=f"msg-{uuid.uuid4().hex[:8]}",
        session_key=session_key("main", f"tools-{uuid.uuid4().hex[:8]}"),
        agent_id="main",
        text=text,
    )
    async with HttpDelivery(gateway.url, gateway.token, timeout_s=90) as delivery:
        return (await delivery.deliver(request)).text


@pytest.mark.anyio
async def test_exec_is_not_offered_to_the_model(openclaw_gateway: OpenClawGateway) -> None:
    reply = await _turn(openclaw_gateway, 'TOOL:exec {"command":"env"}')

    assert reply.startswith("STUB-NO-TOOL: exec (offered: "), reply
    offered = set(reply.removesuffix(")").split("offered: ", 1)[1].split(","))
    assert "read" in offered  # tools are offered at all: it is the policy that leaves these out
    assert not offered & {"exec", "process", "code_execution", "gateway", "openclaw", "cron", "nodes"}


@pytest.mark.anyio
async def test_file_tools_stay_in_the_workspace(openclaw_gateway: OpenClawGateway) -> None:
    reply = await _turn(openclaw_gateway, 'TOOL:read {"path":"/proc/self/environ"}')

    assert reply.startswith("STUB-TOOL-RESULT: "), reply
    assert "escapes sandbox root" in reply
    assert openclaw_gateway.token.get_secret_value() not in reply


def test_the_real_gateway_accepts_the_opt_in_policy(tmp_path: Path) -> None:
    """``openclaw config validate`` (strict about keys and values) on the config of an operator who
    opted into exec; the default policy is the one the session's gateway runs with."""
    runtime = GatewayRuntime(
        ensure_openclaw(os.environ),
        tmp_path / "state",
        model=CompatibleModel(base_url="http://127.0.0.1:9/v1"),
        allow_host_exec=True,
    )
    runtime.write_config()

    checked = runtime.cli("config", "validate", timeout_s=120)

    assert checked.returncode == 0 and "Config valid" in checked.stdout, checked.stdout + checked.stderr
