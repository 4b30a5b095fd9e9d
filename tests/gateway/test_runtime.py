"""The managed gateway runtime: config, the real CLI's verdict on it, start failures, clean stops."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from pydantic import SecretStr

from gateway.config import (
    COMPILE_CACHE_IN_PLACE,
    AgentSpec,
    CompatibleModel,
    HostedModel,
    gateway_config,
    gateway_env,
    secret_env,
)
from gateway.errors import GatewayStartError
from gateway.install import OpenClawInstall, ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.stub_llm import StubLLMServer

STUB = CompatibleModel(base_url="http://127.0.0.1:9/v1")


def test_config_holds_references_not_secrets(tmp_path: Path) -> None:
    model = CompatibleModel(base_url="http://127.0.0.1:9/v1", api_key=SecretStr("model-key-123456"))
    config = gateway_config(port=1234, state_dir=tmp_path, agents=(AgentSpec(id="main"),), model=model)
    env = secret_env(SecretStr("gateway-token-123456"), model)
    text = json.dumps(config)
    for value in env.values():
        assert value not in text
    for name in env:
        assert "${" + name + "}" in text
    assert config["gateway"]["bind"] == "loopback"
    assert "ownership" not in config["agents"]


def test_several_agents_need_explicit_ownership_and_distinct_ids(tmp_path: Path) -> None:
    agents = (AgentSpec(id="main"), AgentSpec(id="alpha", workspace=tmp_path / "alpha-ws"))
    config = gateway_config(port=1234, state_dir=tmp_path, agents=agents, model=STUB)
    assert config["agents"]["ownership"] == "explicit"
    assert config["agents"]["entries"]["alpha"]["workspace"] == str(tmp_path / "alpha-ws")
    with pytest.raises(ValueError, match="duplicate"):
        gateway_config(port=1234, state_dir=tmp_path, agents=(AgentSpec(id="a"), AgentSpec(id="a")), model=STUB)


def test_hosted_model_key_goes_to_the_providers_env_var() -> None:
    model = HostedModel(provider="anthropic", model="claude-opus-5", api_key=SecretStr("sk-ant-xyz"))
    assert secret_env(SecretStr("t" * 20), model)["ANTHROPIC_API_KEY"] == "sk-ant-xyz"
    assert "sk-ant-xyz" not in repr(model)


def test_the_gateway_keeps_nodes_compile_cache_and_nothing_else_of_ours() -> None:
    # The image warms a compile cache at build time; a gateway that does not see it compiles
    # every module on each boot.
    # It is used where it is: the flag that keeps openclaw.mjs from re-executing itself goes too.
    environ = {
        "NODE_COMPILE_CACHE": "/opt/openclaw/compile-cache",
        COMPILE_CACHE_IN_PLACE: "1",
        "FACTORY_STORE": "https://x",
        "PATH": "/bin",
    }
    env = gateway_env(environ, SecretStr("gateway-token-123456"), STUB)
    assert env["NODE_COMPILE_CACHE"] == "/opt/openclaw/compile-cache" and env[COMPILE_CACHE_IN_PLACE] == "1"
    assert "FACTORY_STORE" not in env


@pytest.fixture(scope="module")
def install() -> OpenClawInstall:
    return ensure_openclaw(os.environ)


@pytest.mark.gateway
def test_hosted_model_config_is_accepted_by_openclaw(install: OpenClawInstall, tmp_path: Path) -> None:
    key = "sk-test-not-a-real-key-0123456789"
    model = HostedModel(provider="openai", model="gpt-5.5", api_key=SecretStr(key))
    runtime = GatewayRuntime(install, tmp_path / "state", model=model, agents=["main", "ops"])
    config_path = runtime.write_config()
    assert key not in config_path.read_text()
    validated = runtime.cli("config", "validate")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    listed = runtime.cli("models", "list", "--json")
    models = {m["key"]: m for m in json.loads(listed.stdout)["models"]}
    assert models["openai/gpt-5.5"]["available"]  # the key was found in the environment


@pytest.mark.gateway
def test_invalid_config_fails_fast_with_the_gateways_words(install: OpenClawInstall, tmp_path: Path) -> None:
    runtime = GatewayRuntime(install, tmp_path / "state", model=STUB, heartbeat_every="banana")
    with pytest.raises(GatewayStartError, match="invalid config") as caught:
        runtime.start()
    assert "heartbeat.every" in str(caught.value)
    assert runtime.token.get_secret_value() not in str(caught.value)
    assert not runtime.running


@pytest.fixture
def stub_server() -> Iterator[StubLLMServer]:
    server = StubLLMServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.gateway
@pytest.mark.anyio
async def test_async_start_and_stop_leave_no_process_behind(
    install: OpenClawInstall, tmp_path: Path, stub_server: StubLLMServer
) -> None:
    model = CompatibleModel(base_url=f"http://127.0.0.1:{stub_server.port}/v1")
    async with GatewayRuntime(install, tmp_path / "state", model=model) as runtime:
        pid = runtime.pid
        assert pid is not None
        async with httpx.AsyncClient(trust_env=False) as client:
            assert (await client.get(f"{runtime.url}/readyz")).status_code == 200
        # The pid we track is the gateway's own ("openclaw-gateway", cut to 15 characters), not a
        # launcher that re-executed it to move its compile cache (gateway.config).
        assert (await anyio.Path(f"/proc/{pid}/comm").read_text()).strip() == "openclaw-gatewa"
        assert (tmp_path / "state" / "logs" / "openclaw.jsonl").exists()
    assert not runtime.running
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # neither the gateway nor any helper of its group is left
