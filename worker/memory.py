"""The agent's memory across machines: restore a snapshot at boot, take one at exit.

A pinned worker owns its machine's OpenClaw state directory for its conversation:

* **restore** (before the gateway starts, before the first claim): the newest ready snapshot of
  the conversation is downloaded, its size and sha256 checked, every member checked, then
  unpacked. A corrupt archive is refused, reported to the store (it is never offered again) and
  logged; the machine then starts without it and the worker seeds the session from the stored
  history instead. A state directory that already has the agent's sessions is left alone.
* **snapshot** (drain, ``shouldStop``, SIGTERM, idle exit): the agent's allow-listed state is
  archived and uploaded (prepare → upload → finalize, or fail with the reason), then older
  snapshots of the conversation beyond ``keep`` are expired.

Nothing here may fail a job or the worker: a snapshot that cannot be taken leaves the stored
history, from which a new machine seeds the session.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import anyio
import anyio.to_thread
import structlog

from contracts.errors import FactoryError
from contracts.models import BootBundle, SnapshotFinalize, SnapshotPrepare, SnapshotReason
from contracts.roles import SnapshotStore
from gateway.snapshots import (
    Limits,
    SnapshotCorrupt,
    SnapshotError,
    SnapshotRefused,
    has_state,
    restore_archive,
    write_archive,
)
from worker.metrics import WorkerMetrics

log = structlog.get_logger("worker.memory")
# restore: restored | none | skipped | corrupt | failed;  snapshot: ready | refused | failed
Status = Literal["restored", "none", "skipped", "corrupt", "ready", "refused", "failed"]


@dataclass(frozen=True)
class MemoryOutcome:
    """How a restore or a snapshot went, for logs, metrics and the operator."""

    status: Status
    detail: str = ""
    snapshot_id: str | None = None
    size_bytes: int = 0
    seconds: float = 0.0


@dataclass
class AgentMemory:
    """Snapshots of the OpenClaw state in ``state_dir``, kept in ``store``."""

    store: SnapshotStore
    state_dir: Path
    worker_id: str
    workspace_id: str = "default"
    keep: int = 3
    limits: Limits = field(default_factory=Limits)
    # Values that must never end up in an archive (gateway token, bot token, bridge key, …).
    secrets: Sequence[str] = ()
    metrics: WorkerMetrics | None = None
    # A snapshot that takes longer is given up (failed): the stored history is the fallback.
    timeout_s: float = 300.0

    def _scratch(self) -> Path:
        # Beside the state, on the same disk, outside every allow-listed path.
        path = self.state_dir / ".factory-snapshots"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    async def restore(self, boot: BootBundle) -> MemoryOutcome:
        outcome = await self._restore(boot)
        if self.metrics is not None:
            self.metrics.restore(outcome.status)
        fields = {"conversation_id": boot.conversation_id, "snapshot_id": outcome.snapshot_id}
        if outcome.status == "corrupt":
            log.warning(
                "snapshot refused: corrupt; the session will be seeded from history", **fields, why=outcome.detail
            )
        elif outcome.status == "failed":
            log.warning("snapshot not restored; the session will be seeded from history", **fields, why=outcome.detail)
        else:
            log.info(f"restore: {outcome.status}", **fields, detail=outcome.detail, seconds=round(outcome.seconds, 3))
        return outcome

    async def _restore(self, boot: BootBundle) -> MemoryOutcome:
        snapshot = boot.snapshot
        if snapshot is None:
            return MemoryOutcome("none", "no ready snapshot of this conversation")
        if has_state(self.state_dir, boot.profile.openclaw_agent_id):
            return MemoryOutcome(
                "skipped", "the state directory already has this agent's sessions", snapshot.snapshot_id
            )
        started = anyio.current_time()
        download = self._scratch() / f"restore-{secrets.token_hex(6)}.tar.gz"
        try:
            await self.store.snapshot_download(snapshot, download)
            info = await anyio.to_thread.run_sync(
                partial(
                    restore_archive,
                    download,
                    self.state_dir,
                    sha256=snapshot.sha256,
                    size_bytes=snapshot.size_bytes,
                    limits=self.limits,
                )
            )
        except SnapshotCorrupt as exc:
            with anyio.CancelScope(shield=True):
                await self._report(self.store.snapshot_fail(self.worker_id, snapshot.snapshot_id, f"corrupt: {exc}"))
            return MemoryOutcome("corrupt", str(exc), snapshot.snapshot_id)
        except (FactoryError, OSError) as exc:
            return MemoryOutcome("failed", str(exc), snapshot.snapshot_id)
        finally:
            download.unlink(missing_ok=True)
        took = anyio.current_time() - started
        detail = f"{info.files} files, {snapshot.size_bytes} bytes"
        return MemoryOutcome("restored", detail, snapshot.snapshot_id, snapshot.size_bytes, took)

    async def snapshot(
        self, agent_key: str, agent_id: str, conversation_id: str, reason: SnapshotReason
    ) -> MemoryOutcome:
        outcome = MemoryOutcome("failed", f"not done within {self.timeout_s:g} s")
        with anyio.move_on_after(self.timeout_s):
            outcome = await self._snapshot(agent_key, agent_id, conversation_id, reason)
        if self.metrics is not None:
            self.metrics.snapshot(outcome.status)
        fields = {"conversation_id": conversation_id, "snapshot_id": outcome.snapshot_id, "reason": reason}
        if outcome.status == "ready":
            log.info("snapshot ready", **fields, size_bytes=outcome.size_bytes, seconds=round(outcome.seconds, 3))
        else:
            log.warning(f"snapshot {outcome.status}", **fields, why=outcome.detail)
        return outcome

    async def _snapshot(
        self, agent_key: str, agent_id: str, conversation_id: str, reason: SnapshotReason
    ) -> MemoryOutcome:
        started = anyio.current_time()
        request = SnapshotPrepare(
            worker_id=self.worker_id,
            workspace_id=self.workspace_id,
            agent_key=agent_key,
            conversation_id=conversation_id,
            reason=reason,
        )
        try:
            upload = await self.store.snapshot_prepare(request)
        except FactoryError as exc:
            return MemoryOutcome("failed", f"the store could not prepare it: {exc}")
        archive = self._scratch() / f"{upload.snapshot_id}.tar.gz"
        try:
            info = await anyio.to_thread.run_sync(
                partial(
                    write_archive,
                    self.state_dir,
                    [agent_id],
                    archive,
                    limits=self.limits,
                    secrets=self.secrets,
                    scratch=self._scratch(),
                )
            )
            storage_id = await self.store.snapshot_upload(upload, archive)
            final = SnapshotFinalize(
                worker_id=self.worker_id,
                snapshot_id=upload.snapshot_id,
                storage_id=storage_id,
                sha256=info.sha256,
                size_bytes=info.size_bytes,
            )
            if not await self.store.snapshot_finalize(final):
                raise SnapshotError("the store did not accept the upload")
        except (SnapshotError, FactoryError, OSError) as exc:
            status: Status = "refused" if isinstance(exc, SnapshotRefused) else "failed"
            with anyio.CancelScope(shield=True):
                await self._report(self.store.snapshot_fail(self.worker_id, upload.snapshot_id, _one_line(exc)))
            return MemoryOutcome(status, _one_line(exc), upload.snapshot_id)
        except BaseException:
            # Cancelled (a second signal): say so, then let the cancellation through.
            with anyio.CancelScope(shield=True):
                await self._report(self.store.snapshot_fail(self.worker_id, upload.snapshot_id, "interrupted"))
            raise
        finally:
            archive.unlink(missing_ok=True)
        with anyio.CancelScope(shield=True):
            await self._report(self.store.snapshot_prune(self.keep, conversation_id))
        took = anyio.current_time() - started
        return MemoryOutcome("ready", f"{info.files} files", upload.snapshot_id, info.size_bytes, took)

    @staticmethod
    async def _report(call: Awaitable[object]) -> None:
        """Best effort: a store that cannot take the report now loses nothing the queue needs."""
        try:
            with anyio.move_on_after(10):
                await call
        except FactoryError as exc:
            log.warning("could not record the snapshot outcome", error=str(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:500]


def clear_scratch(state_dir: Path) -> None:
    """Remove leftovers of an interrupted snapshot or restore (a crash mid-way)."""
    shutil.rmtree(state_dir / ".factory-snapshots", ignore_errors=True)
