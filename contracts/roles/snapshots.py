"""The snapshots role: carrying an agent's memory from one machine to the next.

A worker that stops uploads an archive of its agent's OpenClaw state (prepare → upload →
finalize, or fail, as upstream's ``workerPrepareSnapshotUpload`` …); a new machine asks, before its
first claim, for the conversation's agent and newest ready snapshot (``snapshot_boot``) and
downloads it. Operators list and prune. The embedded store keeps archives beside its database
(content-addressed files); Convex keeps them in file storage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from contracts.models import (
    BootBundle,
    SnapshotFinalize,
    SnapshotPrepare,
    SnapshotPruneResult,
    SnapshotRecord,
    SnapshotRestore,
    SnapshotUpload,
)
from contracts.roles.base import StoreHandle


@runtime_checkable
class SnapshotStore(StoreHandle, Protocol):
    async def snapshot_boot(self, workspace_id: str, conversation_id: str) -> BootBundle | None:
        """The conversation's agent profile and newest ready snapshot; None for an unknown conversation."""
        ...

    async def snapshot_prepare(self, request: SnapshotPrepare) -> SnapshotUpload:
        """Record a snapshot as uploading; returns where its archive goes."""
        ...

    async def snapshot_upload(self, upload: SnapshotUpload, archive: Path) -> str:
        """Store the archive file; returns its storage id (for ``snapshot_finalize``)."""
        ...

    async def snapshot_finalize(self, request: SnapshotFinalize) -> bool:
        """Mark the snapshot ready; a draining worker moves on to stopping. False: not this worker's."""
        ...

    async def snapshot_fail(self, worker_id: str, snapshot_id: str, error: str) -> bool:
        """Mark a snapshot failed with the reason: an upload that went wrong, or a restore that found
        the archive corrupt (it is then never offered again)."""
        ...

    async def snapshot_latest(self, workspace_id: str, agent_key: str, conversation_id: str) -> SnapshotRestore | None:
        """The newest snapshot of the conversation if it is ready (no fallback to older ones)."""
        ...

    async def snapshot_download(self, restore: SnapshotRestore, dest: Path) -> None:
        """Write the archive to ``dest``; the caller verifies its checksum."""
        ...

    async def snapshot_list(self, conversation_id: str | None = None, limit: int = 100) -> list[SnapshotRecord]:
        """Snapshots, newest first; of one conversation when given."""
        ...

    async def snapshot_prune(self, keep: int, conversation_id: str | None = None) -> SnapshotPruneResult:
        """Keep the newest ``keep`` ready snapshots per conversation, expire the rest (their archives
        are deleted once nothing refers to them), and fail uploads abandoned for an hour."""
        ...
