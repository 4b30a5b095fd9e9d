"""The whole loop on one machine: a real store, real worker processes, a real OpenClaw gateway.

Work in five conversations → reconcile launches workers → the queue drains → once the workers
have been idle for the window, reconcile drains them, they exit, their processes are reaped,
and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from autoscaler.plan import Destroy, Drain, Launch
from autoscaler.policy import ScalingPolicy
from autoscaler.providers.local import LocalConfig, LocalProvider
from autoscaler.reconciler import Reconciler
from contracts.sqlite import SqliteStore
from factory.fleet import launch_specs
from factory.settings import ScaleSettings, StoreSettings
from tests.gateway_fixture import OpenClawGateway
from tests.worker.harness import eventually, message, worker_env

pytestmark = [pytest.mark.gateway, pytest.mark.slow]


def _pids_with(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (our launch records' state dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.anyio
async def test_work_in_five_conversations_scales_up_drains_and_scales_to_zero(
    tmp_path: Path, openclaw_gateway: OpenClawGateway
) -> None:
    db = tmp_path / "fleet.db"
    store = SqliteStore(db)
    provider = LocalProvider(LocalConfig(state_dir=tmp_path / "local", stop_timeout_s=20))
    scale = ScaleSettings(
        gateway_url=openclaw_gateway.url, gateway_token=openclaw_gateway.token, max_workers=5, max_step=5
    )
    specs = launch_specs(scale, StoreSettings(store=str(db)), "local")
    policy = ScalingPolicy(max_workers=5, max_step=5, scale_down_window_s=2)
    reconciler = Reconciler(store, provider, policy, specs)
    try:
        for c in range(5):
            await store.enqueue(message(f"fleet-{c}", f"fleet message {c}"))
        first = await reconciler.tick()
        assert len([a for a in first.plan.actions if isinstance(a, Launch)]) == 5 and not first.errors

        async def drained() -> bool:
            stats = await store.queue_stats()
            return stats.done == 5

        await eventually(drained, timeout_s=120, what="the queue to drain")
        assert len(await store.list_workers()) == 5

        async def idle_long_enough() -> bool:
            result = await reconciler.tick()
            return any(isinstance(a, Drain) for a in result.plan.actions)

        await eventually(idle_long_enough, timeout_s=30, what="the scale-down drain")

        async def destroyed() -> bool:
            result = await reconciler.tick()
            return not await provider.list() and not any(isinstance(a, Destroy) for a in result.plan.actions)

        await eventually(destroyed, timeout_s=60, what="the drained workers to exit and be destroyed")
        assert (await reconciler.tick()).plan.empty
        assert {w.status for w in await store.list_workers()} == {"stopped"}
        assert await store.ledger_list() == []
        conversation = await store.get_conversation("fleet-3")
        assert conversation is not None and conversation.history[-1].content == "STUB-REPLY: fleet message 3"
    finally:
        with anyio.CancelScope(shield=True):
            await provider.destroy_all()
            await provider.aclose()
            await store.aclose()
    assert _pids_with(str(tmp_path / "local")) == []


def test_reconcile_cli_dry_run_then_for_real(tmp_path: Path, openclaw_gateway: OpenClawGateway) -> None:
    db = tmp_path / "cli.db"
    env = worker_env(openclaw_gateway, FACTORY_STORE=str(db), FACTORY_SCALE_DOWN_WINDOW_S="1")

    def factory(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "factory", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )

    for c in range(3):
        assert factory("enqueue", f"cli fleet {c}", "--conversation", f"cli-{c}").returncode == 0
    dry = factory("reconcile", "--provider", "local", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    body = json.loads(dry.stdout)
    assert [a["action"] for a in body["actions"]].count("launch") >= 1 and not body["applied"]
    assert not list((tmp_path / "local").glob("*.json"))  # a dry run launches nothing
    real = factory("reconcile", "--provider", "local")
    assert real.returncode == 0, real.stderr
    try:
        deadline = time.monotonic() + 120
        while json.loads(factory("queue", "stats", "--json").stdout)["done"] < 3:
            assert time.monotonic() < deadline, "workers did not process the queue"
            time.sleep(0.5)
        # Scale back to zero through the CLI as cron would: drain, then destroy once they exit.
        deadline = time.monotonic() + 90
        while list((tmp_path / "local").glob("*.json")):
            assert time.monotonic() < deadline, factory("reconcile", "--provider", "local").stdout
            factory("reconcile", "--provider", "local")
            time.sleep(1)
    finally:
        for pid in _pids_with(str(tmp_path)):
            if pid != os.getpid():
                os.kill(pid, 9)
    assert _pids_with(str(tmp_path / "local")) == []


def test_a_watch_drains_a_worker_when_its_window_ends_not_an_interval_later(
    tmp_path: Path, openclaw_gateway: OpenClawGateway
) -> None:
    """``reconcile --watch 120``: the worker's last complete rings the store's idle bell, the watch
    looks, and looks again when the 1 s window ends; only then, not two minutes later, is it drained."""
    db = tmp_path / "watch.db"
    env = worker_env(openclaw_gateway, FACTORY_STORE=str(db), FACTORY_SCALE_DOWN_WINDOW_S="1")

    async def settled_and_statuses() -> tuple[int, list[str]]:
        store = SqliteStore(db, create=False, doorbell=False)
        try:
            return (await store.queue_stats()).done, [w.status for w in await store.list_workers()]
        finally:
            await store.aclose()

    enqueued = subprocess.run(
        [sys.executable, "-m", "factory", "enqueue", "watch me", "--conversation", "watch-1"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    log = tmp_path / "watch.log"
    with open(log, "ab") as out:
        watch = subprocess.Popen(
            [sys.executable, "-m", "factory", "reconcile", "--provider", "local", "--watch", "120"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 120
        while anyio.run(settled_and_statuses)[0] < 1:
            assert time.monotonic() < deadline and watch.poll() is None, log.read_text()
            time.sleep(0.2)
        finished = time.monotonic()
        while anyio.run(settled_and_statuses)[1] == ["active"]:
            assert time.monotonic() - finished < 60 and watch.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        watch.terminate()
        watch.wait(timeout=60)
        for pid in _pids_with(str(tmp_path)):
            if pid != os.getpid():
                os.kill(pid, 9)
    assert _pids_with(str(tmp_path / "local")) == []
