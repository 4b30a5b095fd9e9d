"""Bridge tool calls against a loopback app (tests/fakes/bridge_app.py), and ``factory bridge call``."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from contracts.bridge import complete_bridge, resolve_bridge
from contracts.models import BridgeConfig, ResolvedBridge
from tests.fakes.bridge_app import SERVICE_ID, SERVICE_KEY, TASKS, BridgeApp
from tests.fakes.sleep import RecordingSleep
from worker.bridge import (
    BridgeClient,
    BridgeRefused,
    BridgeSettings,
    check_url,
    read_bridge_config,
    write_bridge_config,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def app() -> Iterator[BridgeApp]:
    with BridgeApp() as fake:
        yield fake


def settings(app: BridgeApp, **kw: object) -> BridgeSettings:
    base = {
        "base_url": app.url,
        "service_id": SERVICE_ID,
        "service_key": SecretStr(SERVICE_KEY),
        "app_key": "crm",
        "allowed_hosts": ["127.0.0.1"],
        "timeout_s": 5,
    }
    return BridgeSettings.model_validate({**base, **kw})


async def loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


async def test_a_call_posts_the_function_with_the_service_headers(app: BridgeApp) -> None:
    client = BridgeClient(settings(app), resolver=loopback)
    try:
        answer = await client.call("bridge.tasks.list", {"limit": 2})
    finally:
        await client.aclose()
    assert answer == {"success": True, "status": 200, "functionKey": "tasks.list", "result": TASKS}
    assert app.calls == [{"app": "crm", "functionKey": "tasks.list", "args": {"limit": 2}}]


async def test_429_and_5xx_are_retried_with_backoff_and_retry_after_but_4xx_is_final(app: BridgeApp) -> None:
    sleep = RecordingSleep()
    client = BridgeClient(settings(app), resolver=loopback, sleep=sleep)
    try:
        app.fail_next("execute", 429, headers={"Retry-After": "2"})
        app.fail_next("execute", 503)
        answer = await client.call("echo", {"x": 1})
        assert answer["success"] and answer["result"] == {"x": 1}
        assert sleep.calls[0] == 2.0 and len(sleep.calls) == 2
        unknown = await client.call("nope", {})
        assert (unknown["success"], unknown["status"]) == (False, 404) and "unknown function" in unknown["error"]
        assert app.count("execute") == 4  # 429, 503, echo, nope: the 404 was not retried
        app.fail_next("execute", 500, times=3)
        gave_up = await client.call("echo", {})
        assert (gave_up["success"], gave_up["status"], gave_up["error"]) == (False, 500, "internal error")
    finally:
        await client.aclose()


async def test_a_wrong_service_key_is_a_final_401(app: BridgeApp) -> None:
    client = BridgeClient(settings(app, service_key=SecretStr("wrong-key-123")), resolver=loopback)
    try:
        answer = await client.call("tasks.list", {})
    finally:
        await client.aclose()
    assert (answer["success"], answer["status"]) == (False, 401) and app.count("execute") == 1


async def test_redirects_are_followed_on_the_same_origin_only(app: BridgeApp) -> None:
    moved = BridgeClient(settings(app, base_url=f"{app.url}/moved"), resolver=loopback)
    away = BridgeClient(settings(app, base_url=f"{app.url}/away"), resolver=loopback)
    try:
        assert (await moved.call("tasks.list", {}))["success"]
        with pytest.raises(BridgeRefused, match="another origin"):
            await away.call("tasks.list", {})
    finally:
        await moved.aclose()
        await away.aclose()


async def test_hosts_off_the_allow_list_link_local_and_metadata_are_refused_before_sending(app: BridgeApp) -> None:
    with pytest.raises(BridgeRefused, match="allow-list"):
        check_url("https://evil.example.com", ["app.example.com"])
    with pytest.raises(BridgeRefused, match="link-local"):
        check_url("http://169.254.169.254/latest", ["169.254.169.254"])
    with pytest.raises(BridgeRefused, match="metadata"):
        check_url("http://metadata.google.internal", ["metadata.google.internal"])
    with pytest.raises(BridgeRefused, match="credentials"):
        check_url("https://user:pw@app.example.com", ["app.example.com"])

    async def rebinding(host: str, port: int) -> list[str]:
        return ["169.254.169.254"]  # an allowed name that resolves to the metadata service

    client = BridgeClient(settings(app), resolver=rebinding)
    try:
        with pytest.raises(BridgeRefused, match="link-local"):
            await client.call("tasks.list", {})
    finally:
        await client.aclose()
    assert app.count("execute") == 0


def test_resolution_follows_upstream_order_and_the_worker_env_comes_last() -> None:
    config = BridgeConfig(service_id="from-profile", app_base_url_map_json_secret_ref="maps")
    secrets = {
        "agent-bridge.serviceId.bot": "per-agent",  # loses to the profile field
        "agent-bridge.serviceKey.bot": "per-agent-key",
        "agent-bridge.serviceKey": "global-key",
        "agent-bridge.appKey": "crm",
        "maps": json.dumps({"crm": "https://crm.example.com"}),
    }
    resolved = resolve_bridge("bot", config, secrets)
    assert resolved.service_id == "from-profile" and resolved.base_url is None
    assert resolved.service_key is not None and resolved.service_key.get_secret_value() == "per-agent-key"
    filled = complete_bridge(resolved, {"baseUrl": None, "serviceId": "from-env", "appKey": "other"})
    assert filled.service_id == "from-profile" and filled.app_key == "crm"
    assert filled.base_url == "https://crm.example.com"  # from the app map, by app key
    env_only = complete_bridge(ResolvedBridge(), {"baseUrl": "https://env.example.com", "serviceId": "s"})
    assert (env_only.base_url, env_only.service_id) == ("https://env.example.com", "s")


def test_the_settings_file_is_private_and_factory_bridge_call_uses_it(app: BridgeApp, tmp_path: Path) -> None:
    path = tmp_path / "bridge" / "main.json"
    resolved = ResolvedBridge(
        base_url=app.url, service_id=SERVICE_ID, service_key=SecretStr(SERVICE_KEY), allowed_hosts=["127.0.0.1"]
    )
    written = write_bridge_config(path, resolved, {"appKey": "crm"})
    assert written.missing == [] and read_bridge_config(path) == written
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    def run(*args: str) -> tuple[int, dict[str, object]]:
        done = subprocess.run(
            [sys.executable, "-m", "factory", "bridge", "call", *args, "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.returncode, json.loads(done.stdout)

    code, answer = run("tasks.list", "--args", '{"limit": 1}')
    assert code == 0 and answer["result"] == TASKS
    code, answer = run("tasks.list", "--args", "[1, 2]")
    assert code == 1 and "one JSON object" in str(answer["error"])
    write_bridge_config(path, resolved.model_copy(update={"service_key": None}), {})
    code, answer = run("tasks.list")
    assert code == 1 and "serviceKey" in str(answer["error"]) and "appKey" in str(answer["error"])
    assert SERVICE_KEY not in json.dumps(answer)
