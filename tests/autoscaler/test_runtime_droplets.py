"""One runtime droplet per account, against the DigitalOcean fake: tagged, never doubled, replaced."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from autoscaler.provider import LaunchSpec
from autoscaler.providers.digitalocean import DigitalOceanProvider
from autoscaler.runtimes import ledger_provider, reconcile_runtimes, runtime_worker_id
from contracts.launch import WorkerEnvironment
from contracts.retry import RetryPolicy
from contracts.runtime import Account, new_service_token, token_hash
from contracts.sqlite import SqliteStore
from tests.autoscaler.conftest import unlimited
from tests.autoscaler.test_digitalocean_provider import config
from tests.fakes import FakeDigitalOceanApi
from tests.fakes.sleep import RecordingSleep

pytestmark = pytest.mark.anyio
CONVEX = "https://example.convex.cloud"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "fleet.db")
    await s.account_put(Account(account_id="acme", name="Acme"))
    try:
        yield s
    finally:
        await s.aclose()


def _runtimes(api: FakeDigitalOceanApi, sleeps: RecordingSleep) -> DigitalOceanProvider:
    cfg = config(api, fleet_tag="factory-runtime", name_prefix="factory-runtime", extra_tags=())
    return DigitalOceanProvider(cfg, limiter=unlimited(), retry=RetryPolicy(attempts=2), sleep=sleeps)


def _spec_for(store: SqliteStore) -> Callable[[str, str], Awaitable[LaunchSpec]]:
    async def spec_for(account_id: str, launch_id: str) -> LaunchSpec:
        token = new_service_token()
        await store.account_token(account_id, token_hash(token))
        environment = WorkerEnvironment(
            worker_id=runtime_worker_id(account_id), launch_id=launch_id, store=CONVEX, command="runtime",
            account_id=account_id, service_token=token,
        )  # fmt: skip
        return LaunchSpec(environment=environment)

    return spec_for


def _env_of(api: FakeDigitalOceanApi, droplet_id: int) -> dict[str, str]:
    cloud = yaml.safe_load(api.user_data_of(droplet_id))
    (env_file,) = [f for f in cloud["write_files"] if f.get("encoding") == "b64"]
    lines = base64.b64decode(env_file["content"]).decode().splitlines()
    return dict(line.split("=", 1) for line in lines)


async def test_one_tagged_droplet_per_account_never_doubled_replaced_when_it_dies_removed_on_deprovision(
    store: SqliteStore, do_api: FakeDigitalOceanApi, sleeps: RecordingSleep
) -> None:
    provider = _runtimes(do_api, sleeps)
    spec_for = _spec_for(store)
    try:
        do_api.list_lag(1)  # a new droplet is missing from the next listing, as on DigitalOcean
        first = await reconcile_runtimes(provider, store, {"acme"}, spec_for)
        assert first.plan.create == ("acme",) and not first.errors
        (droplet,) = do_api.live()
        assert {"factory-runtime", "factory-worker-runtime-acme"} <= set(droplet["tags"])
        assert "factory" not in droplet["tags"]  # invisible to worker scaling
        env = _env_of(do_api, droplet["id"])
        assert (env["FACTORY_COMMAND"], env["ACCOUNT_ID"]) == ("runtime", "acme")
        # The token the droplet was given opens the account; the store keeps only its hash.
        await store.open_account("acme", SecretStr(env["SERVICE_TOKEN"]))
        workers = DigitalOceanProvider(config(do_api), limiter=unlimited(), sleep=sleeps)
        assert await workers.list() == []
        await workers.aclose()

        do_api.list_lag(0)
        # Not listed yet: the ledger knows it is on its way, so no second one is made.
        assert (await reconcile_runtimes(provider, store, {"acme"}, spec_for)).plan.empty
        assert (await reconcile_runtimes(provider, store, {"acme"}, spec_for)).plan.empty
        assert len(do_api.live()) == 1

        do_api.droplets[droplet["id"]]["status"] = "off"  # the runtime's machine died
        replaced = await reconcile_runtimes(provider, store, {"acme"}, spec_for)
        assert replaced.destroyed == [str(droplet["id"])] and replaced.plan.create == ("acme",)
        (successor,) = do_api.live()
        assert successor["id"] != droplet["id"]

        gone = await reconcile_runtimes(provider, store, set(), spec_for)
        assert gone.destroyed == [str(successor["id"])], gone.errors
        assert (successor["id"], "shutdown") in do_api.actions  # drained before it was destroyed
        assert do_api.live() == []
        ledger = [
            r for r in await store.ledger_list(include_closed=True) if r.provider == ledger_provider("digitalocean")
        ]
        assert sorted(r.state for r in ledger) == ["gone", "gone"]
    finally:
        await provider.aclose()
