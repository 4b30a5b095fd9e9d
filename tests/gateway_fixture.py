"""The real OpenClaw gateway for tests: installed once per machine, started once per session.

``openclaw_gateway`` installs openclaw (first run only, into ``~/.cache/factory``), starts our stub
LLM and a gateway with two agents on loopback, warms both agents up, and stops everything at the
end of the session. Tests that use it are marked ``@pytest.mark.gateway``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from gateway.config import CompatibleModel
from gateway.install import ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.stub_llm import StubLLMProcess

GATEWAY_AGENTS = ("main", "alpha")


@dataclass(frozen=True)
class OpenClawGateway:
    url: str
    ws_url: str
    token: SecretStr
    stub_log: Path
    state_dir: Path
    agents: tuple[str, ...]

    def llm_calls(self) -> list[dict[str, Any]]:
        """Every model call the stub has answered so far, oldest first."""
        if not self.stub_log.exists():
            return []
        return [json.loads(line) for line in self.stub_log.read_text().splitlines() if line.strip()]

    def llm_call_count(self) -> int:
        return len(self.llm_calls())

    def calls_for(self, marker: str) -> list[dict[str, Any]]:
        """The model calls whose user text contains ``marker``."""
        return [call for call in self.llm_calls() if marker in call["user_text"]]

    def calls_saying(self, text: str) -> int:
        """How many model calls had exactly ``text`` as their user text. Other tests' turns may
        still be reaching the shared gateway's model, so a test counts its own text, not all calls."""
        return sum(1 for call in self.llm_calls() if call["user_text"] == text)


@pytest.fixture(scope="session")
def openclaw_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenClawGateway]:
    install = ensure_openclaw(os.environ)
    root = tmp_path_factory.mktemp("openclaw")
    stub_log = root / "stub-llm.jsonl"
    with StubLLMProcess.start(stub_log, output=root / "stub-llm.out") as stub:
        # Minutes, not the default 90 s: a 2-core machine shared with other suites starts it slowly.
        runtime = GatewayRuntime(
            install,
            root / "state",
            model=CompatibleModel(base_url=stub.base_url),
            agents=GATEWAY_AGENTS,
            ready_timeout_s=300,
        )
        with runtime:
            runtime.warm_up()
            yield OpenClawGateway(
                url=runtime.url,
                ws_url=runtime.ws_url,
                token=runtime.token,
                stub_log=stub_log,
                state_dir=runtime.state_dir,
                agents=GATEWAY_AGENTS,
            )
