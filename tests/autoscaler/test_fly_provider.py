"""The Fly provider over real loopback HTTP against the fake Machines API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from autoscaler.errors import ProviderError
from autoscaler.provider import LaunchSpec, Provider, Suspends, find_launch
from autoscaler.providers.fly import FlyConfig, FlyProvider
from autoscaler.ratelimit import KeyedRateLimiter, Limit
from contracts.launch import WorkerEnvironment
from contracts.retry import RetryPolicy
from tests.autoscaler.conftest import (
    FLY_TOKEN,
    SECRET_VALUE,
    FakeClock,
    assert_no_secrets,
    unlimited,
)
from tests.fakes import FakeFlyApi
from tests.fakes.sleep import RecordingSleep

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

SPEC = LaunchSpec(
    environment=WorkerEnvironment(
        launch_id="01JLAUNCHA",
        worker_id="worker-a",
        store="https://example.convex.cloud",
        convex_auth_token=SecretStr(SECRET_VALUE),
    )
)


def config(api: FakeFlyApi, **overrides: Any) -> FlyConfig:
    fields: dict[str, Any] = {
        "api_token": SecretStr(FLY_TOKEN),
        "app": api.app,
        "image": "registry.fly.io/factory-worker:1",
        "region": "iad",
        "api_base_url": api.url,
        "request_timeout_s": 5.0,
        "stop_timeout_s": 120,
        "metadata": {"factory_pool": "default"},
    }
    fields.update(overrides)
    return FlyConfig(**fields)


def provider_for(api: FakeFlyApi, sleeps: RecordingSleep, *, attempts: int = 3, **overrides: Any) -> FlyProvider:
    return FlyProvider(
        config(api, **overrides),
        limiter=unlimited(),
        retry=RetryPolicy(attempts=attempts),
        sleep=sleeps,
    )


@pytest.fixture
async def fly(fly_api: FakeFlyApi, sleeps: RecordingSleep) -> AsyncIterator[FlyProvider]:
    provider = provider_for(fly_api, sleeps)
    yield provider
    await provider.aclose()


async def test_create_sends_the_documented_body(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    machine = await fly.create(SPEC)

    assert machine.provider == "fly"
    assert machine.launch_id == SPEC.launch_id
    assert machine.worker_id == SPEC.worker_id
    assert machine.region == "iad"
    assert machine.state == "starting"  # Fly answers "created"; it boots afterwards
    assert machine.created_at_ms is not None
    (body,) = fly_api.create_bodies
    assert body["name"] == "factory-worker-01jlauncha"
    assert body["region"] == "iad"
    cfg = body["config"]
    assert cfg["image"] == "registry.fly.io/factory-worker:1"
    assert cfg["guest"] == {"cpu_kind": "shared", "cpus": 1, "memory_mb": 2048}
    assert cfg["env"] == {
        "FACTORY_STORE": "https://example.convex.cloud",
        "FACTORY_WORKER_ID": "worker-a",
        "FACTORY_LAUNCH_ID": "01JLAUNCHA",
        "FACTORY_WORKER_PROVIDER": "fly",
    }
    # The store token is an app secret, and the machine waits for the version that holds it.
    assert body["min_secrets_version"] == fly_api.secrets_version == 1
    assert cfg["metadata"] == {
        "factory_pool": "default",
        "factory_role": "worker",
        "factory_launch_id": "01JLAUNCHA",
        "factory_worker_id": "worker-a",
    }
    assert cfg["auto_destroy"] is True
    assert cfg["restart"] == {"policy": "no"}
    assert cfg["stop_config"] == {"signal": "SIGTERM", "timeout": "120s"}
    assert fly_api.auth_headers[-1] == f"FlyV1 {FLY_TOKEN}"


async def test_secrets_reach_the_machine_as_app_secrets_never_in_its_config(
    fly: FlyProvider, fly_api: FakeFlyApi
) -> None:
    first = await fly.create(SPEC)
    second = await fly.create(
        SPEC.model_copy(
            update={
                "environment": SPEC.environment.model_copy(update={"launch_id": "01JLAUNCHB", "worker_id": "worker-b"})
            }
        )
    )

    assert fly_api.app_secrets == {"CONVEX_AUTH_TOKEN": SECRET_VALUE}
    assert fly_api.count("set_secret") == 1  # set once, not per machine
    for machine in (first, second):
        assert fly_api.machine_env(machine.machine_id)["CONVEX_AUTH_TOKEN"] == SECRET_VALUE
    for body in fly_api.create_bodies:
        assert SECRET_VALUE not in str(body)
    for listed in await fly.list():
        assert listed.machine_id in (first.machine_id, second.machine_id)


async def test_list_returns_only_fleet_machines_and_tolerates_schema_drift(
    fly: FlyProvider, fly_api: FakeFlyApi
) -> None:
    ours = await fly.create(SPEC)
    fly_api.add_machine(metadata={"factory_role": "autoscaler"})
    fly_api.add_machine(metadata={})
    unreachable = fly_api.add_machine(
        metadata={"factory_role": "worker", "factory_launch_id": "01JLOST"}, host_status="unreachable"
    )

    machines = {m.machine_id: m for m in await fly.list()}

    assert set(machines) == {ours.machine_id, unreachable}
    assert machines[ours.machine_id].state == "running"
    # Config is null on an unreachable host: the state is unknowable, the launch id unreadable.
    assert machines[unreachable].state == "unknown"
    assert machines[unreachable].launch_id is None
    assert fly_api.count("list") == 1


async def test_find_tolerates_the_eventually_consistent_list(
    fly: FlyProvider, fly_api: FakeFlyApi, sleeps: RecordingSleep
) -> None:
    fly_api.list_lag(2)
    created = await fly.create(SPEC)

    assert await fly.find(SPEC.launch_id) is None  # committed, not yet visible
    found = await find_launch(fly, SPEC.launch_id, attempts=3, interval_s=0.5, sleep=sleeps)

    assert found is not None
    assert found.machine_id == created.machine_id
    assert sleeps.calls == [0.5]
    assert await fly.find("01JNOSUCHLAUNCH") is None


async def test_stop_sends_sigterm_with_the_drain_timeout_and_is_idempotent(
    fly: FlyProvider, fly_api: FakeFlyApi
) -> None:
    machine = await fly.create(SPEC)

    await fly.stop(machine)
    await fly.stop(machine)

    assert fly_api.stop_bodies[0] == {"signal": "SIGTERM", "timeout": "120s"}
    assert [m.state for m in await fly.list()] == ["stopped"]
    await fly.destroy(machine)
    await fly.stop(machine)  # gone: 404 counts as stopped


async def test_destroy_forces_and_a_machine_already_gone_is_success(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    machine = await fly.create(SPEC)

    await fly.destroy(machine)
    await fly.destroy(machine)

    assert fly_api.delete_queries[0] == {"force": ["true"]}
    assert [entry[3] for entry in fly_api.log if entry[2] == "delete"] == [200, 404]
    assert await fly.list() == []


async def test_a_rejected_token_is_named_without_showing_it(fly_api: FakeFlyApi, sleeps: RecordingSleep) -> None:
    wrong = "fm2_wrongtokencanary9876543210"
    provider = provider_for(fly_api, sleeps, api_token=SecretStr(wrong))

    with pytest.raises(ProviderError) as caught:
        await provider.list()
    await provider.aclose()

    error = caught.value
    assert error.status == 401
    assert not error.retryable
    assert "token was rejected" in str(error)
    assert "factory-workers" in str(error)
    assert_no_secrets(error, wrong, FLY_TOKEN)
    assert fly_api.count("list") == 1  # an auth failure is not retried
    assert wrong not in repr(config(fly_api, api_token=SecretStr(wrong)))


async def test_429_waits_what_retry_after_says(fly: FlyProvider, fly_api: FakeFlyApi, sleeps: RecordingSleep) -> None:
    fly_api.fail_next("list", 429, body={"error": "rate limit exceeded"}, headers={"retry-after": "2"})

    assert await fly.list() == []

    assert sleeps.calls == [2.0]
    assert fly_api.count("list") == 2


async def test_5xx_is_retried_for_list_and_destroy(
    fly: FlyProvider, fly_api: FakeFlyApi, sleeps: RecordingSleep
) -> None:
    machine = await fly.create(SPEC)
    fly_api.fail_next("list", 503, times=2)
    fly_api.fail_next("delete", 502)

    assert [m.machine_id for m in await fly.list()] == [machine.machine_id]
    await fly.destroy(machine)

    assert fly_api.count("list") == 3
    assert fly_api.count("delete") == 2
    assert len(sleeps.calls) == 3
    assert fly_api.live() == []


async def test_retries_stop_at_the_attempt_limit(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    fly_api.fail_next("list", 500, times=5)

    with pytest.raises(ProviderError) as caught:
        await fly.list()

    assert caught.value.status == 500
    assert caught.value.retryable
    assert fly_api.count("list") == 3


async def test_a_read_timeout_on_list_is_retried(fly_api: FakeFlyApi, sleeps: RecordingSleep) -> None:
    provider = provider_for(fly_api, sleeps, request_timeout_s=0.3)
    fly_api.timeout_next("list", delay_s=3.0)

    assert await provider.list() == []
    await provider.aclose()

    assert fly_api.count("list") == 2


@pytest.mark.parametrize("mode", ["lost_504", "drop"])
async def test_a_create_whose_answer_is_lost_is_ambiguous_and_find_resolves_it(
    fly: FlyProvider, fly_api: FakeFlyApi, mode: str
) -> None:
    fly_api.lose_response_next("create", mode="drop" if mode == "drop" else "lost_504")

    with pytest.raises(ProviderError) as caught:
        await fly.create(SPEC)

    assert caught.value.ambiguous
    assert caught.value.status == (504 if mode == "lost_504" else None)
    assert_no_secrets(caught.value, FLY_TOKEN, SECRET_VALUE)
    assert fly_api.count("create") == 1  # never retried blindly
    found = await fly.find(SPEC.launch_id)
    assert found is not None
    assert len(fly_api.live()) == 1


async def test_a_create_that_times_out_is_ambiguous(fly_api: FakeFlyApi, sleeps: RecordingSleep) -> None:
    provider = provider_for(fly_api, sleeps, request_timeout_s=0.3)
    fly_api.timeout_next("create", delay_s=3.0, commit=True)

    with pytest.raises(ProviderError) as caught:
        await provider.create(SPEC)

    assert caught.value.ambiguous
    assert "0.3s" in str(caught.value)
    assert fly_api.count("create") == 1
    assert await provider.find(SPEC.launch_id) is not None
    await provider.aclose()


async def test_creating_a_launch_again_adopts_its_machine(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    fly_api.lose_response_next("create", mode="lost_504")
    with pytest.raises(ProviderError):
        await fly.create(SPEC)

    again = await fly.create(SPEC)

    assert again.launch_id == SPEC.launch_id
    assert [m["id"] for m in fly_api.live()] == [again.machine_id]
    assert fly_api.count("create") == 2


async def test_a_429_on_create_is_retried_without_a_duplicate(
    fly: FlyProvider, fly_api: FakeFlyApi, sleeps: RecordingSleep
) -> None:
    fly_api.fail_next("create", 429, body={"error": "rate limit exceeded"}, headers={"retry-after": "1"})

    machine = await fly.create(SPEC)

    assert fly_api.count("create") == 2
    assert sleeps.calls == [1.0]
    assert [m["id"] for m in fly_api.live()] == [machine.machine_id]


async def test_a_connection_refused_create_is_retryable_not_ambiguous(sleeps: RecordingSleep) -> None:
    with FakeFlyApi(token=FLY_TOKEN) as api:
        closed = api.url
    provider = FlyProvider(
        FlyConfig(api_token=SecretStr(FLY_TOKEN), app="factory-workers", image="img:1", api_base_url=closed),
        limiter=unlimited(),
        retry=RetryPolicy(attempts=2),
        sleep=sleeps,
    )

    with pytest.raises(ProviderError) as caught:
        await provider.create(SPEC)
    await provider.aclose()

    assert caught.value.retryable
    assert not caught.value.ambiguous
    assert len(sleeps.calls) == 1


async def test_a_held_lease_is_retryable(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    machine = await fly.create(SPEC)
    fly_api.fail_next("delete", 409, times=3, body={"error": "lease currently held by deploy@example.com"})

    with pytest.raises(ProviderError) as caught:
        await fly.destroy(machine)

    assert caught.value.status == 409
    assert caught.value.retryable
    assert "leased" in str(caught.value)
    assert fly_api.count("delete") == 3


@pytest.mark.parametrize(
    ("status", "said"),
    [
        (412, "insufficient resources to create new machine"),
        (422, "invalid config.guest.cpus"),
        (400, "bad request"),
    ],
)
async def test_refused_requests_carry_the_api_message_and_are_not_retried(
    fly: FlyProvider, fly_api: FakeFlyApi, status: int, said: str
) -> None:
    fly_api.fail_next("create", status, body={"error": said})

    with pytest.raises(ProviderError) as caught:
        await fly.create(SPEC)

    assert caught.value.status == status
    assert not caught.value.retryable
    assert not caught.value.ambiguous
    assert said in str(caught.value)
    assert fly_api.count("create") == 1


async def test_a_secret_echoed_by_the_api_is_redacted(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    fly_api.fail_next("create", 422, body={"error": f"env CONVEX_AUTH_TOKEN={SECRET_VALUE} is invalid"})

    with pytest.raises(ProviderError) as caught:
        await fly.create(SPEC)

    assert "[redacted]" in str(caught.value)
    assert_no_secrets(caught.value, SECRET_VALUE, FLY_TOKEN)


async def test_an_oauth_token_goes_out_as_bearer(sleeps: RecordingSleep) -> None:
    with FakeFlyApi(token="oauthtokencanary") as api:
        provider = provider_for(api, sleeps, api_token=SecretStr("oauthtokencanary"))
        await provider.list()
        await provider.aclose()
    assert api.auth_headers == ["Bearer oauthtokencanary"]


async def test_wait_reaches_a_state_or_times_out(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    machine = await fly.create(SPEC)

    await fly.wait(machine, "started", timeout_s=5)
    with pytest.raises(ProviderError) as caught:
        await fly.wait(machine, "stopped", timeout_s=1)

    assert caught.value.status == 408
    assert caught.value.retryable


async def test_requests_are_paced_per_action(fly_api: FakeFlyApi) -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(Limit(rate_per_s=1, burst=3), clock=clock, sleep=clock.sleep)
    provider = FlyProvider(config(fly_api), limiter=limiter, sleep=clock.sleep)

    for _ in range(5):
        await provider.list()
    await provider.create(SPEC)  # another action: its own bucket, no wait
    await provider.aclose()

    # Burst of 3 at once, then one per second.
    assert clock.sleeps == [1.0, 1.0]


async def test_an_owned_client_is_closed_and_an_injected_one_is_not(fly_api: FakeFlyApi) -> None:
    async with httpx.AsyncClient() as client:
        provider = FlyProvider(config(fly_api), client=client, limiter=unlimited())
        await provider.list()
        await provider.aclose()
        assert not client.is_closed


def test_config_refuses_our_own_metadata_keys_and_an_empty_token() -> None:
    base: dict[str, Any] = {"app": "factory-workers", "image": "img:1"}
    with pytest.raises(ValidationError, match="factory_role"):
        FlyConfig(api_token=SecretStr("t"), metadata={"factory_role": "x"}, **base)
    with pytest.raises(ValidationError, match="FLY_API_TOKEN"):
        FlyConfig(api_token=SecretStr(" "), **base)
    with pytest.raises(ValidationError, match="memory_mb"):
        FlyConfig(api_token=SecretStr("t"), memory_mb=1000, **base)


def test_the_provider_satisfies_the_protocol(fly_api: FakeFlyApi) -> None:
    provider: Provider = FlyProvider(config(fly_api))
    assert provider.name == "fly"


async def test_a_garbled_list_is_an_error_not_an_empty_fleet(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    await fly.create(SPEC)
    fly_api.fail_next("list", 200, body={"machines": "not an array"}, times=3)

    with pytest.raises(ProviderError, match="JSON array") as caught:
        await fly.list()

    assert caught.value.retryable
    assert fly_api.count("list") == 3


async def test_an_unreadable_create_answer_is_ambiguous(fly: FlyProvider, fly_api: FakeFlyApi) -> None:
    fly_api.fail_next("create", 200, body={"no": "id"})

    with pytest.raises(ProviderError) as caught:
        await fly.create(SPEC)

    assert caught.value.ambiguous
    assert fly_api.count("create") == 1


async def test_a_pool_machine_is_created_stopped_kept_when_its_worker_exits_and_started(
    fly_api: FakeFlyApi, sleeps: RecordingSleep
) -> None:
    fly = provider_for(fly_api, sleeps, keep_stopped=True)
    try:
        parked = await fly.create(SPEC, parked=True)
        (body,) = fly_api.create_bodies
        assert body["skip_launch"] is True and body["config"]["auto_destroy"] is False
        assert [m.state for m in await fly.list()] == ["starting"]  # "created": not booted, costs its disk only
        await fly.start(parked)
        assert [m.state for m in await fly.list()] == ["running"]  # the fake boots at once
        fly_api.exit_worker(parked.machine_id)
        assert [m.state for m in await fly.list()] == ["stopped"]  # kept, not destroyed
        await fly.start(parked)
        await fly.start(parked)  # already started: Fly answers with the previous state
        assert fly_api.count("start") == 3 and [m.state for m in await fly.list()] == ["running"]
        await fly.destroy(parked)
        with pytest.raises(ProviderError) as gone:
            await fly.start(parked)
        assert gone.value.status == 404 and not gone.value.retryable
    finally:
        await fly.aclose()


async def test_a_stopped_machine_is_told_its_conversation_before_it_boots(
    fly_api: FakeFlyApi, sleeps: RecordingSleep
) -> None:
    fly = provider_for(fly_api, sleeps, keep_stopped=True)
    try:
        parked = await fly.create(SPEC, parked=True)
        pinned = SPEC.model_copy(update={"environment": SPEC.environment.model_copy(update={"conversation_id": "c7"})})
        fly_api.fail_next("update", 503)  # the same whole config again is safe to send twice
        await fly.reconfigure(parked, pinned)
        assert fly_api.count("update") == 2
        # The whole config, as Fly's update wants it, without the immutable name and region; the
        # machine stays stopped until the start that boots it.
        (body,) = fly_api.update_bodies  # the 503 never reached the handler
        assert body["skip_launch"] is True and "name" not in body and "region" not in body
        assert body["config"]["image"] == "registry.fly.io/factory-worker:1"
        assert [m.state for m in await fly.list()] == ["starting"]  # still "created", not booted
        env = fly_api.machine_env(parked.machine_id)
        assert env["FACTORY_CONVERSATION"] == "c7" and env["CONVEX_AUTH_TOKEN"] == SECRET_VALUE
        assert [m.conversation_id for m in await fly.list()] == ["c7"]  # its metadata names it too
        assert "CONVEX_AUTH_TOKEN" not in body["config"]["env"]  # secrets stay app secrets
        await fly.start(parked)
        assert [(m.state, m.launch_id) for m in await fly.list()] == [("running", SPEC.launch_id)]
        # Back to the pool's environment once it is stopped again.
        fly_api.exit_worker(parked.machine_id)
        await fly.reconfigure(parked, SPEC)
        assert "FACTORY_CONVERSATION" not in fly_api.machine_env(parked.machine_id)
        assert [m.conversation_id for m in await fly.list()] == [None]
        assert [m.state for m in await fly.list()] == ["stopped"]
    finally:
        await fly.aclose()


async def test_without_a_pool_a_machine_destroys_itself_when_its_worker_exits(
    fly: FlyProvider, fly_api: FakeFlyApi
) -> None:
    machine = await fly.create(SPEC)
    fly_api.exit_worker(machine.machine_id)
    assert await fly.list() == []


async def test_starts_are_paced_per_machine(fly_api: FakeFlyApi) -> None:
    clock = FakeClock()
    limiter = KeyedRateLimiter(Limit(rate_per_s=1, burst=1), clock=clock, sleep=clock.sleep)
    fly = FlyProvider(config(fly_api), limiter=limiter, retry=RetryPolicy(attempts=1), sleep=clock.sleep)
    try:
        machines = [
            await fly.create(
                SPEC.model_copy(update={"environment": SPEC.environment.model_copy(update={"launch_id": f"L{i}"})}),
                parked=True,
            )
            for i in range(3)
        ]
        clock.sleeps.clear()
        for machine in machines:
            await fly.start(machine)
        assert clock.sleeps == []  # one bucket per machine: a pool starts all at once
    finally:
        await fly.aclose()


async def test_a_suspended_machine_is_listed_as_such_and_a_start_resumes_the_same_instance(
    fly_api: FakeFlyApi, sleeps: RecordingSleep
) -> None:
    fly = provider_for(fly_api, sleeps, keep_stopped=True)
    try:
        assert isinstance(fly, Suspends)
        machine = await fly.create(SPEC)
        instance = fly_api.machines[machine.machine_id]["instance_id"]
        await fly.suspend(machine)
        assert [m.state for m in await fly.list()] == ["suspended"]
        await fly.start(machine)
        assert [m.state for m in await fly.list()] == ["running"]
        # The same instance: its processes (the worker, the gateway) were frozen, not booted again.
        assert fly_api.machines[machine.machine_id]["instance_id"] == instance
        fly_api.exit_worker(machine.machine_id)
        with pytest.raises(ProviderError) as refused:
            await fly.suspend(machine)  # only a running machine has memory to keep
        assert refused.value.status == 412 and not refused.value.retryable
    finally:
        await fly.aclose()
