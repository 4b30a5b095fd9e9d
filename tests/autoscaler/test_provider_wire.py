"""Pure pieces of the providers: auth headers, state tables, tolerant parsing, shared helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from autoscaler.provider import LaunchSpec
from autoscaler.providers._common import iso_to_ms, machine_name, secret_values, worker_env
from autoscaler.providers._do_wire import Droplet, parse_droplets, retry_after
from autoscaler.providers._fly_wire import (
    FlyMachine,
    NameTaken,
    authorization,
    error_from_response,
    normalise_state,
    parse_machines,
)
from contracts.launch import ENV, WorkerEnvironment
from contracts.retry import parse_retry_after
from factory.fleet import launch_specs
from factory.settings import ScaleSettings, StoreSettings, WorkerSettings


@pytest.mark.parametrize(
    ("token", "header"),
    [
        ("fm2_abc", "FlyV1 fm2_abc"),
        ("FlyV1 fm2_abc,fm2_def", "FlyV1 fm2_abc,fm2_def"),
        ("fm1r_x, fm1a_y", "FlyV1 fm1r_x,fm1a_y"),
        ("Bearer fm2_abc", "FlyV1 fm2_abc"),
        ("oauth-token", "Bearer oauth-token"),
        ("  Bearer oauth-token  ", "Bearer oauth-token"),
    ],
)
def test_the_fly_auth_header_matches_what_fly_go_sends(token: str, header: str) -> None:
    assert authorization(token) == header


def fly_machine(**fields: Any) -> FlyMachine:
    return FlyMachine.model_validate({"id": "m1", "config": {"metadata": {}}, "host_status": "ok", **fields})


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("created", "starting"),
        ("starting", "starting"),
        ("started", "running"),
        ("stopping", "stopping"),
        ("stopped", "stopped"),
        ("suspended", "suspended"),
        ("failed", "failed"),
        ("launch_failed", "failed"),
        ("something_new", "unknown"),
        (None, "unknown"),
    ],
)
def test_fly_states_normalise(state: str | None, expected: str) -> None:
    assert normalise_state(fly_machine(state=state)) == expected


def test_an_unreachable_fly_host_is_unknown_whatever_its_state() -> None:
    assert normalise_state(fly_machine(state="started", host_status="unreachable", config=None)) == "unknown"


def test_fly_parsing_ignores_what_it_does_not_read_and_skips_what_it_cannot() -> None:
    payload = [
        {"id": "a", "state": "started", "config": {"services": [{"autostop": "suspend"}, {"autostop": True}]}},
        {"id": "b", "state": "started", "config": None, "brand_new_field": {"x": 1}},
        {"no_id": True},
        "garbage",
    ]

    machines, skipped = parse_machines(payload)

    assert [m.id for m in machines] == ["a", "b"]
    assert skipped == 2
    assert parse_machines({"not": "a list"}) == ([], 0)


def test_a_name_taken_create_is_its_own_error() -> None:
    response = httpx.Response(422, json={"error": "already exists", "status": "name_taken"})

    error = error_from_response("create", response, app="a", create=True, secrets=[])

    assert isinstance(error, NameTaken)
    assert not error.retryable


def test_a_404_on_create_is_not_ambiguous_and_5xx_is() -> None:
    missing = error_from_response(
        "create", httpx.Response(404, json={"error": "app not found"}), app="a", create=True, secrets=[]
    )
    broken = error_from_response("create", httpx.Response(503, text="<html>"), app="a", create=True, secrets=[])

    assert (missing.retryable, missing.ambiguous) == (False, False)
    assert (broken.retryable, broken.ambiguous) == (True, True)
    assert "<html>" in str(broken)


def test_do_parsing_is_tolerant() -> None:
    droplets, skipped = parse_droplets(
        {"droplets": [{"id": 1, "status": "off", "region": "nyc1", "tags": None}, {"id": "x"}, {"status": "new"}]}
    )

    assert [d.id for d in droplets] == [1]
    assert skipped == 2
    assert droplets[0].state == "stopped"
    assert droplets[0].region_slug == "nyc1"
    assert Droplet(id=2, status="archive").state == "unknown"


def test_do_waits_prefer_retry_after_then_ratelimit_reset() -> None:
    assert retry_after({"Retry-After": "4"}, now_s=100.0) == 4.0
    assert retry_after({"ratelimit-reset": "130"}, now_s=100.0) == 30.0
    assert retry_after({"ratelimit-reset": "90"}, now_s=100.0) == 0.0
    assert retry_after({"ratelimit-reset": "soon"}, now_s=100.0) is None
    assert retry_after({}, now_s=100.0) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3", now_s=0) == 3.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now_s=40.0) == 60.0
    assert parse_retry_after("whenever", now_s=0) is None
    assert parse_retry_after(None, now_s=0) is None


def test_a_worker_is_told_its_allow_listed_environment_and_the_provider() -> None:
    environment = WorkerEnvironment(
        launch_id="L1",
        worker_id="W1",
        store="https://x.convex.cloud",
        convex_auth_token=SecretStr("s3cr3t"),
        idle_exit_s=30,
    )
    spec = LaunchSpec(environment=environment)
    assert worker_env(spec, "fly") == {
        "FACTORY_WORKER_ID": "W1",
        "FACTORY_LAUNCH_ID": "L1",
        "FACTORY_WORKER_PROVIDER": "fly",
        "FACTORY_STORE": "https://x.convex.cloud",
        "CONVEX_AUTH_TOKEN": "s3cr3t",
        "FACTORY_IDLE_EXIT_S": "30",
    }
    assert secret_values(spec) == ["s3cr3t"]
    assert set(environment.render()) <= set(ENV.values())


def test_machine_names_are_deterministic_and_platform_safe() -> None:
    assert machine_name("factory-worker", "01JABC") == "factory-worker-01jabc"
    assert machine_name("factory-worker", "a_b:c") == "factory-worker-a-b-c"
    assert len(machine_name("factory-worker", "x" * 200)) == 63
    assert machine_name("factory-worker", "___") == "factory-worker-launch"


def test_timestamps() -> None:
    assert iso_to_ms("1970-01-01T00:00:01Z") == 1000
    assert iso_to_ms("not a time") is None
    assert iso_to_ms("2024-01-01T00:00:00") is None  # no zone: refuse to guess


def test_a_sticky_launch_is_told_so_and_its_worker_reads_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    specs = launch_specs(ScaleSettings(provider="local"), StoreSettings(store=str(tmp_path / "s.db")), "local")
    told = specs("L1", "W1", None, True).environment.render()
    assert told["FACTORY_STICKY"] == "True"
    assert "FACTORY_STICKY" not in specs("L2", "W2", "conv-a", True).environment.render()  # pinned already
    assert "FACTORY_STICKY" not in specs("L3", "W3", None, False).environment.render()
    monkeypatch.setenv("FACTORY_STICKY", told["FACTORY_STICKY"])
    assert WorkerSettings().sticky
