"""The DigitalOcean provider over real loopback HTTP against the fake droplets API."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from autoscaler.errors import ProviderConfigError, ProviderError
from autoscaler.provider import LaunchSpec, Provider
from autoscaler.providers.digitalocean import DigitalOceanConfig, DigitalOceanProvider
from contracts.launch import WorkerEnvironment
from contracts.retry import RetryPolicy
from tests.autoscaler.conftest import DO_TOKEN, SECRET_VALUE, assert_no_secrets, unlimited
from tests.fakes import FakeDigitalOceanApi
from tests.fakes.sleep import RecordingSleep

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

SPEC = LaunchSpec(
    environment=WorkerEnvironment(
        launch_id="01JLAUNCHB",
        worker_id="worker-b",
        store="https://example.convex.cloud",
        convex_auth_token=SecretStr(SECRET_VALUE),
    )
)


def config(api: FakeDigitalOceanApi, **overrides: Any) -> DigitalOceanConfig:
    fields: dict[str, Any] = {
        "token": SecretStr(DO_TOKEN),
        "worker_image": "ghcr.io/acme/factory-worker:1.2.3",
        "region": "ams3",
        "size": "s-2vcpu-4gb",
        "image": "docker-20-04",
        "ssh_key_ids": (101, 202),
        "extra_tags": ("pool-default",),
        "api_base_url": api.api_url,
        "request_timeout_s": 5.0,
        "stop_timeout_s": 120,
    }
    fields.update(overrides)
    return DigitalOceanConfig(**fields)


def provider_for(
    api: FakeDigitalOceanApi, sleeps: RecordingSleep, *, attempts: int = 3, **overrides: Any
) -> DigitalOceanProvider:
    return DigitalOceanProvider(
        config(api, **overrides), limiter=unlimited(), retry=RetryPolicy(attempts=attempts), sleep=sleeps
    )


@pytest.fixture
async def do(do_api: FakeDigitalOceanApi, sleeps: RecordingSleep) -> AsyncIterator[DigitalOceanProvider]:
    provider = provider_for(do_api, sleeps)
    yield provider
    await provider.aclose()


async def test_create_tags_names_and_boots_the_worker(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    machine = await do.create(SPEC)

    assert machine.provider == "digitalocean"
    assert machine.state == "starting"  # "new"
    assert machine.launch_id == SPEC.launch_id
    assert machine.worker_id == SPEC.worker_id
    assert machine.region == "ams3"
    (body,) = do_api.create_bodies
    assert body["name"] == "factory-worker-01jlaunchb"
    assert (body["region"], body["size"], body["image"]) == ("ams3", "s-2vcpu-4gb", "docker-20-04")
    assert body["ssh_keys"] == [101, 202]
    assert body["tags"] == ["factory", "factory-launch-01JLAUNCHB", "pool-default", "factory-worker-worker-b"]

    user_data = do_api.user_data_of(int(machine.machine_id))
    assert user_data.startswith("#cloud-config\n")
    assert SECRET_VALUE not in user_data  # only base64-encoded, inside the 0600 env file
    cloud = yaml.safe_load(user_data)
    env_file = next(f for f in cloud["write_files"] if f["path"] == "/etc/factory/worker.env")
    assert env_file["permissions"] == "0600"
    lines = base64.b64decode(env_file["content"]).decode().splitlines()
    assert f"CONVEX_AUTH_TOKEN={SECRET_VALUE}" in lines
    assert "FACTORY_LAUNCH_ID=01JLAUNCHB" in lines
    assert "FACTORY_WORKER_ID=worker-b" in lines


async def test_list_reports_the_fleet_with_off_as_stopped_and_without_archives(
    do_api: FakeDigitalOceanApi, sleeps: RecordingSleep
) -> None:
    do_api.max_page_size = 2  # force the library to follow links.pages.next
    provider = provider_for(do_api, sleeps)
    created = [
        await provider.create(LaunchSpec(environment=SPEC.environment.model_copy(update={"launch_id": f"01JL{n}"})))
        for n in range(3)
    ]
    off = do_api.add_droplet(tags=["factory", "factory-launch-01JOFF"], status="off")
    do_api.add_droplet(tags=["factory"], status="archive")
    do_api.add_droplet(tags=["web"])

    machines = {m.machine_id: m for m in await provider.list()}
    await provider.aclose()

    assert set(machines) == {*(m.machine_id for m in created), str(off)}
    assert machines[str(off)].state == "stopped"  # still billed: the planner destroys it
    assert {machines[m.machine_id].state for m in created} == {"running"}
    assert do_api.count("list") == 3  # 5 tagged droplets, 2 per page


async def test_find_looks_up_the_launch_tag(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    do_api.list_lag(1)
    created = await do.create(SPEC)

    assert await do.find(SPEC.launch_id) is None  # not visible yet
    found = await do.find(SPEC.launch_id)

    assert found is not None
    assert found.machine_id == created.machine_id
    assert await do.find("01JNOSUCHLAUNCH") is None


async def test_stop_shuts_down_and_is_idempotent(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    machine = await do.create(SPEC)

    await do.stop(machine)
    await do.stop(machine)  # already off: DigitalOcean says 422, which counts as done

    assert do_api.actions == [(int(machine.machine_id), "shutdown")]
    assert [m.state for m in await do.list()] == ["stopped"]
    await do.destroy(machine)
    await do.stop(machine)  # gone: 404 counts as stopped


async def test_destroy_deletes_and_a_droplet_already_gone_is_success(
    do: DigitalOceanProvider, do_api: FakeDigitalOceanApi
) -> None:
    machine = await do.create(SPEC)

    await do.destroy(machine)
    await do.destroy(machine)

    assert [entry[3] for entry in do_api.log if entry[2] == "delete"] == [204, 404]
    assert do_api.live() == []


async def test_a_rejected_token_is_named_without_showing_it(
    do_api: FakeDigitalOceanApi, sleeps: RecordingSleep
) -> None:
    wrong = "dop_v1_wrongtokencanary987654321"
    provider = provider_for(do_api, sleeps, token=SecretStr(wrong))

    with pytest.raises(ProviderError) as caught:
        await provider.list()
    await provider.aclose()

    assert caught.value.status == 401
    assert not caught.value.retryable
    assert "token was rejected" in str(caught.value)
    assert_no_secrets(caught.value, wrong, DO_TOKEN)
    assert do_api.count("list") == 1


async def test_429_waits_for_retry_after(
    do: DigitalOceanProvider, do_api: FakeDigitalOceanApi, sleeps: RecordingSleep
) -> None:
    do_api.rate_limit_next("list", retry_after=3, reset_in_s=30)

    assert await do.list() == []

    assert sleeps.calls == [3.0]
    assert do_api.count("list") == 2


async def test_429_without_retry_after_waits_for_ratelimit_reset(
    do: DigitalOceanProvider, do_api: FakeDigitalOceanApi, sleeps: RecordingSleep
) -> None:
    do_api.rate_limit_next("create", reset_in_s=5)

    await do.create(SPEC)

    (waited,) = sleeps.calls
    assert 3.0 < waited <= 5.0
    assert do_api.count("create") == 2  # a 429 is refused before any work: safe to send again
    assert len(do_api.live()) == 1


async def test_5xx_is_retried_for_list_and_destroy(
    do: DigitalOceanProvider, do_api: FakeDigitalOceanApi, sleeps: RecordingSleep
) -> None:
    machine = await do.create(SPEC)
    do_api.fail_next("list", 503, times=2)
    do_api.fail_next("delete", 500)

    assert [m.machine_id for m in await do.list()] == [machine.machine_id]
    await do.destroy(machine)

    assert do_api.count("list") == 3
    assert do_api.count("delete") == 2
    assert len(sleeps.calls) == 3


@pytest.mark.parametrize("fault", ["500", "lost_504", "drop"])
async def test_a_create_that_may_have_happened_is_ambiguous_and_find_resolves_it(
    do: DigitalOceanProvider, do_api: FakeDigitalOceanApi, fault: str
) -> None:
    if fault == "500":
        do_api.fail_next("create", 500)  # refused here; on the real API a 5xx may still have created
    else:
        do_api.lose_response_next("create", mode="drop" if fault == "drop" else "lost_504")

    with pytest.raises(ProviderError) as caught:
        await do.create(SPEC)

    assert caught.value.ambiguous
    assert_no_secrets(caught.value, DO_TOKEN, SECRET_VALUE)
    assert do_api.count("create") == 1  # never retried blindly
    found = await do.find(SPEC.launch_id)
    assert (found is not None) == (fault != "500")
    assert len(do_api.live()) == (0 if fault == "500" else 1)


async def test_a_create_that_times_out_is_ambiguous(do_api: FakeDigitalOceanApi, sleeps: RecordingSleep) -> None:
    # The library's only timeout knob is a process env var; the provider must not depend on it.
    assert "PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC" not in os.environ
    provider = provider_for(do_api, sleeps, request_timeout_s=0.3)
    do_api.timeout_next("create", delay_s=3.0, commit=True)

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await provider.create(SPEC)
    elapsed = time.monotonic() - started

    assert caught.value.ambiguous
    assert elapsed < 2.0
    assert await provider.find(SPEC.launch_id) is not None
    await provider.aclose()


async def test_a_read_timeout_on_list_is_retried(do_api: FakeDigitalOceanApi, sleeps: RecordingSleep) -> None:
    provider = provider_for(do_api, sleeps, request_timeout_s=0.3)
    do_api.timeout_next("list", delay_s=3.0)

    assert await provider.list() == []
    await provider.aclose()

    assert do_api.count("list") == 2


async def test_the_droplet_limit_is_reported_and_not_retried(sleeps: RecordingSleep) -> None:
    with FakeDigitalOceanApi(token=DO_TOKEN, droplet_limit=1) as api:
        provider = provider_for(api, sleeps)
        await provider.create(SPEC)
        with pytest.raises(ProviderError) as caught:
            await provider.create(
                LaunchSpec(environment=SPEC.environment.model_copy(update={"launch_id": "01JSECOND"}))
            )
        await provider.aclose()

    assert caught.value.status == 422
    assert not caught.value.retryable
    assert "droplet limit" in str(caught.value)
    assert caught.value.request_id
    assert api.count("create") == 2


async def test_bad_launch_input_fails_before_any_request(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    def spec(**fields: object) -> LaunchSpec:
        return LaunchSpec(environment=SPEC.environment.model_copy(update=fields))

    with pytest.raises(ProviderError, match="tag"):
        await do.create(spec(launch_id="has space"))
    with pytest.raises(ProviderConfigError) as caught:
        await do.create(spec(convex_auth_token=SecretStr(f"a\n{SECRET_VALUE}")))

    assert "CONVEX_AUTH_TOKEN" in str(caught.value)
    assert_no_secrets(caught.value, SECRET_VALUE)
    assert do_api.count("create") == 0


def test_config_validates_tags_and_token(do_api: FakeDigitalOceanApi) -> None:
    with pytest.raises(ValidationError, match="set by the provider"):
        config(do_api, extra_tags=("factory",))
    with pytest.raises(ValidationError, match="not a valid tag"):
        config(do_api, extra_tags=("has space",))
    with pytest.raises(ValidationError, match="DIGITALOCEAN_TOKEN"):
        config(do_api, token=SecretStr(""))
    assert DO_TOKEN not in repr(config(do_api))
    assert config(do_api, api_base_url="http://127.0.0.1:1/v2").api_base_url.endswith("/v2/")


async def test_the_provider_satisfies_the_protocol(do: DigitalOceanProvider) -> None:
    provider: Provider = do
    assert provider.name == "digitalocean"


async def test_the_library_environment_variables_have_no_say(
    do: DigitalOceanProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timeout, endpoint and token come from DigitalOceanConfig alone, whatever the process env says.
    monkeypatch.setenv("PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC", "0.000001")
    monkeypatch.setenv("DIGITALOCEAN_END_POINT", "http://127.0.0.1:9/v2/")
    monkeypatch.setenv("DIGITALOCEAN_ACCESS_TOKEN", "dop_v1_fromtheenvironment")

    assert await do.list() == []


async def test_a_garbled_list_is_an_error_not_an_empty_fleet(
    do: DigitalOceanProvider, do_api: FakeDigitalOceanApi
) -> None:
    await do.create(SPEC)
    do_api.fail_next("list", 200, body={"droplet": "missing the array"})

    with pytest.raises(ProviderError, match="droplets array"):
        await do.list()


async def test_an_unreadable_create_answer_is_ambiguous(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    do_api.fail_next("create", 202, body={"droplet": {"no": "id"}})

    with pytest.raises(ProviderError) as caught:
        await do.create(SPEC)

    assert caught.value.ambiguous
    assert do_api.count("create") == 1


async def test_a_powered_off_droplet_is_started_again(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    machine = await do.create(SPEC)
    await do.stop(machine)
    assert [m.state for m in await do.list()] == ["stopped"]  # off, and still billed: the pool pays full price

    await do.start(machine)
    await do.start(machine)  # already on: DigitalOcean says 422, which counts as done

    droplet = int(machine.machine_id)
    assert do_api.actions == [(droplet, "shutdown"), (droplet, "power_on")]
    assert [m.state for m in await do.list()] == ["running"]


async def test_a_droplet_cannot_be_created_powered_off(do: DigitalOceanProvider, do_api: FakeDigitalOceanApi) -> None:
    with pytest.raises(ProviderError, match="POOL_PREFILL") as refused:
        await do.create(SPEC, parked=True)
    assert not refused.value.retryable and do_api.count("create") == 0
