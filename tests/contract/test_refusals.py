"""Bad input is refused alike by every binding, and the worker counts tell the living from the gone."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from contracts.errors import InvalidInput
from contracts.models import SetWorkerStatusRequest, WorkerRegistration
from tests.contract.conftest import LEASE_TTL_MS, Harness

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("ref", "value", "field"), [("telegram.botToken.a", " ", "value"), ("", "x", "secretRef")])
async def test_an_empty_secret_or_ref_is_refused(harness: Harness, ref: str, value: str, field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        await harness.store.import_secret(ref, SecretStr(value))

    assert refused.value.field == field


async def test_an_active_worker_without_a_heartbeat_for_two_leases_counts_as_stale(harness: Harness) -> None:
    store = harness.store
    await store.worker_register(WorkerRegistration(worker_id="gone", provider="local"))
    await harness.advance(2 * LEASE_TTL_MS + 1)
    await store.worker_register(WorkerRegistration(worker_id="alive", provider="local"))
    await store.worker_register(WorkerRegistration(worker_id="exited", provider="local"))
    await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id="exited", status="stopped", reason="exited"))

    assert (await store.queue_stats()).workers == {"active": 1, "stale": 1, "stopped": 1}
