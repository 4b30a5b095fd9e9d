"""Snapshots, pinned workers, agent workspaces and bridge settings: one suite for every store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from pydantic import SecretStr

from contracts.errors import InvalidInput
from contracts.models import (
    AgentProfile,
    BridgeConfig,
    LaunchRecord,
    SetWorkerStatusRequest,
    SnapshotFinalize,
    SnapshotPrepare,
    WorkerRegistration,
)
from tests.contract.conftest import Harness
from tests.contract.helpers import Store, lease_of, register, request

pytestmark = pytest.mark.anyio
HOUR_MS = 3_600_000


async def _snapshot(
    store: Store, tmp_path: Path, data: bytes, *, conversation: str = "c1", worker: str = "w1", finalize: bool = True
) -> tuple[str, str, int]:
    """Prepare, upload and (by default) finalize a snapshot of ``data``; returns (id, sha256, size)."""
    upload = await store.snapshot_prepare(
        SnapshotPrepare(
            worker_id=worker, workspace_id="default", agent_key="default", conversation_id=conversation, reason="drain"
        )
    )
    archive = tmp_path / f"{upload.snapshot_id}.tgz"
    archive.write_bytes(data)
    storage_id = await store.snapshot_upload(upload, archive)
    sha = hashlib.sha256(data).hexdigest()
    if finalize:
        final = SnapshotFinalize(
            worker_id=worker, snapshot_id=upload.snapshot_id, storage_id=storage_id, sha256=sha, size_bytes=len(data)
        )
        assert await store.snapshot_finalize(final)
    return upload.snapshot_id, sha, len(data)


async def test_a_finalized_snapshot_is_offered_at_boot_and_downloads_intact(harness: Harness, tmp_path: Path) -> None:
    store = harness.store
    await store.enqueue(request("c1", "hello"))
    snapshot_id, sha, size = await _snapshot(store, tmp_path, b"archive bytes \x00\x01" * 100)

    boot = await store.snapshot_boot("default", "c1")
    assert boot is not None and boot.agent_key == "default" and boot.profile.agent_key == "default"
    assert boot.snapshot is not None
    assert (boot.snapshot.snapshot_id, boot.snapshot.sha256, boot.snapshot.size_bytes) == (snapshot_id, sha, size)
    dest = tmp_path / "restored"
    await store.snapshot_download(boot.snapshot, dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == sha
    [listed] = await store.snapshot_list("c1")
    assert (listed.status, listed.reason, listed.worker_id) == ("ready", "drain", "w1")
    assert await store.snapshot_boot("default", "nobody") is None


async def test_only_the_newest_snapshot_is_offered_and_only_when_ready(harness: Harness, tmp_path: Path) -> None:
    store = harness.store
    await store.enqueue(request("c1", "hello"))
    await _snapshot(store, tmp_path, b"older")
    await harness.advance(10)
    uploading, _, _ = await _snapshot(store, tmp_path, b"newer", finalize=False)
    # The newest is still uploading: no fallback to the older one (it lacks the newest turns).
    assert await store.snapshot_latest("default", "default", "c1") is None
    assert await store.snapshot_fail("w1", uploading, "disk full")
    assert await store.snapshot_latest("default", "default", "c1") is None
    await harness.advance(10)
    newest, _, _ = await _snapshot(store, tmp_path, b"newest")
    latest = await store.snapshot_latest("default", "default", "c1")
    assert latest is not None and latest.snapshot_id == newest
    assert await store.snapshot_latest("default", "other-agent", "c1") is None


async def test_finalize_is_fenced_by_the_worker_and_the_upload(harness: Harness, tmp_path: Path) -> None:
    store = harness.store
    snapshot_id, sha, size = await _snapshot(store, tmp_path, b"payload", finalize=False)
    upload = await store.snapshot_prepare(
        SnapshotPrepare(
            worker_id="w1", workspace_id="default", agent_key="default", conversation_id="c9", reason="idle"
        )
    )
    archive = tmp_path / "x.tgz"
    archive.write_bytes(b"payload")
    storage_id = await store.snapshot_upload(upload, archive)

    def final(**kw: object) -> SnapshotFinalize:
        base = {"worker_id": "w1", "snapshot_id": upload.snapshot_id, "storage_id": storage_id, "sha256": sha}
        return SnapshotFinalize.model_validate({**base, "size_bytes": size, **kw})

    assert not await store.snapshot_finalize(final(worker_id="w2"))
    assert not await store.snapshot_finalize(final(size_bytes=size + 1))  # not what was uploaded
    assert await store.snapshot_finalize(final())
    assert await store.snapshot_finalize(final())  # a replay reports the same outcome
    assert not await store.snapshot_fail("w2", snapshot_id, "not yours")


async def test_a_restorer_reports_a_corrupt_snapshot_and_it_is_never_offered_again(
    harness: Harness, tmp_path: Path
) -> None:
    store = harness.store
    await store.enqueue(request("c1", "hello"))
    snapshot_id, _, _ = await _snapshot(store, tmp_path, b"bits")
    assert await store.snapshot_fail("w-new", snapshot_id, "corrupt: sha256 mismatch")
    assert await store.snapshot_latest("default", "default", "c1") is None
    [row] = await store.snapshot_list("c1")
    assert row.status == "failed" and row.error is not None and "corrupt" in row.error


async def test_prune_keeps_the_newest_per_conversation_and_fails_abandoned_uploads(
    harness: Harness, tmp_path: Path
) -> None:
    store = harness.store
    for n in range(3):
        await _snapshot(store, tmp_path, f"c1 #{n}".encode(), conversation="c1")
        await _snapshot(store, tmp_path, f"c2 #{n}".encode(), conversation="c2")
        await harness.advance(10)
    stale, _, _ = await _snapshot(store, tmp_path, b"never finished", conversation="c3", finalize=False)
    first = await store.snapshot_prune(2, "c1")
    assert (first.expired, first.abandoned) == (1, 0)
    await harness.advance(HOUR_MS + 1)
    everywhere = await store.snapshot_prune(1)
    assert (everywhere.expired, everywhere.abandoned) == (3, 1)
    statuses = {(r.conversation_id, r.status) for r in await store.snapshot_list(limit=50)}
    assert ("c1", "ready") in statuses and ("c3", "failed") in statuses
    assert sum(1 for r in await store.snapshot_list("c2") if r.status == "ready") == 1
    assert stale in {r.snapshot_id for r in await store.snapshot_list("c3") if r.status == "failed"}
    with pytest.raises(InvalidInput):
        await store.snapshot_prune(-1)


async def test_a_final_snapshot_moves_a_draining_worker_to_stopping(harness: Harness, tmp_path: Path) -> None:
    store = harness.store
    await register(store)
    assert await store.fleet_set_worker_status(SetWorkerStatusRequest(worker_id="w1", status="draining", reason="x"))
    _, _, _ = await _snapshot(store, tmp_path, b"state", finalize=False)
    [view] = (await store.fleet_demand()).workers
    assert view.snapshot_pending
    await _snapshot(store, tmp_path, b"state")
    [worker] = await store.list_workers()
    assert worker.status == "stopping" and worker.status_reason is not None and "snapshot" in worker.status_reason


async def test_a_pinned_worker_and_launch_say_which_conversation_they_serve(harness: Harness) -> None:
    store = harness.store
    await store.worker_register(WorkerRegistration(worker_id="w-pin", provider="local", conversation_id="c-x"))
    await register(store, "w-any")
    await store.enqueue(request("c-low", "later", priority=10))
    await store.enqueue(request("c-high", "first", priority=90))
    demand = await store.fleet_demand()
    views = {w.worker_id: w for w in demand.workers}
    assert views["w-pin"].pinned and views["w-pin"].conversation_id == "c-x"
    assert not views["w-any"].pinned
    assert demand.ready_conversation_ids == ["c-high", "c-low"]  # claim order
    [worker] = [w for w in await store.list_workers() if w.worker_id == "w-pin"]
    assert worker.pinned_conversation_id == "c-x"
    now = await store.now_ms()
    record = await store.ledger_record(
        LaunchRecord(launch_id="L-pin", provider="local", requested_at=now, conversation_id="c-x")
    )
    assert record.conversation_id == "c-x"
    assert [r.conversation_id for r in await store.ledger_list()] == ["c-x"]


async def test_profiles_carry_workspace_files_and_a_skill_allowlist(harness: Harness) -> None:
    store = harness.store
    profile = AgentProfile(
        agent_key="writer",
        workspace_files={"SOUL.md": "Be brief. MARK-SOUL", "skills/notes/SKILL.md": "---\nname: notes\n---\n"},
        skills=["notes", "notes"],
    )
    await store.upsert_agent_profile(profile)
    stored = await store.get_agent_profile("writer")
    assert stored is not None
    assert stored.workspace_files == profile.workspace_files and stored.skills == ["notes"]
    with pytest.raises(InvalidInput, match="workspaceFiles"):
        await store.upsert_agent_profile(
            AgentProfile.model_construct(
                agent_key="bad", workspace_files={"../etc/passwd": "x"}, secrets_ref=[], openclaw_agent_id="main"
            )
        )


async def test_the_bundle_resolves_the_bridge_in_upstream_order(harness: Harness) -> None:
    store = harness.store
    await register(store)
    bridge = BridgeConfig(base_url="https://app.example.com", allowed_hosts=["app.example.com"])
    await store.upsert_agent_profile(AgentProfile(agent_key="bridged", bridge_config=bridge))
    await store.upsert_agent_profile(AgentProfile(agent_key="plain"))
    for ref, value in [
        ("agent-bridge.serviceId.bridged", "svc-agent"),  # per agent wins over the global secret
        ("agent-bridge.serviceId", "svc-global"),
        ("agent-bridge.serviceKey", "global-key"),  # only the global one is set
        ("agent-bridge.baseUrl", "https://ignored.example.com"),  # the profile's field wins
    ]:
        await store.import_secret(ref, SecretStr(value))
    await store.enqueue(request("cb", "hi", agent_key="bridged"))
    await store.enqueue(request("cp", "hi", agent_key="plain"))
    seen = {}
    for _ in range(2):
        job = await store.worker_claim("w1")
        assert job is not None
        seen[job.agent_key] = await store.worker_hydration_bundle(job.message_id)
        await store.worker_complete(lease_of(job))
    bridged, plain = seen["bridged"], seen["plain"]
    assert bridged is not None and bridged.bridge is not None
    assert bridged.bridge.base_url == "https://app.example.com"
    assert bridged.bridge.service_id == "svc-agent"
    assert bridged.bridge.service_key is not None and bridged.bridge.service_key.get_secret_value() == "global-key"
    assert bridged.bridge.allowed_hosts == ["app.example.com"] and bridged.bridge.app_key is None
    # An agent without a bridge is sent no bridge secrets at all.
    assert plain is not None and plain.bridge is None and "global-key" not in plain.model_dump_json()
