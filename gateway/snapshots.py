"""Snapshot archives of an agent's OpenClaw state: what goes in, and what may come back out.

An archive is a gzip'd tar of allow-listed paths under the gateway's state directory, plus a
manifest (``factory-snapshot.json``)::

    agents/<agent>/agent/openclaw-agent.sqlite   sessions, transcripts, memory index; copied with
                                                 SQLite's backup API (the gateway may be writing)
    agents/<agent>/sessions/cold/…               cold transcript archives (authoritative history)
    agents/<agent>/agent/workshop-skills/…       skills the agent drafted itself
    workspaces/<agent>/…                         the workspace: MEMORY.md, memory/, files, skills

Nothing else: not ``openclaw.json``, not ``state/`` (it holds the device's private key), not
``home/``, logs, caches or credentials. Symlinks are never followed or archived; a file that holds
one of the secrets the caller names (gateway token, bot token, …) refuses the whole snapshot;
the uncompressed total is capped. Restoring checks the archive's size and sha256 first, then every
member again (regular files and folders only, allow-listed paths, no escapes, the same cap), and
SQLite's integrity check on each database, before anything is moved into the state directory.

The filters (:func:`plan_archive`, :func:`check_member`) are pure; the rest does the file I/O and
is blocking (callers run it in a thread).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets as _secrets
import shutil
import sqlite3
import stat
import tarfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from contracts.models import SNAPSHOT_FORMAT
from gateway.errors import GatewayError

MANIFEST = "factory-snapshot.json"
AGENT_DB = "openclaw-agent.sqlite"
_AGENT = r"[a-z0-9][a-z0-9_-]{0,63}"
# What may be archived and restored, as full relative paths (the agent id is part of the match).
_ALLOWED = (
    re.compile(rf"^agents/{_AGENT}/agent/{re.escape(AGENT_DB)}$"),
    re.compile(rf"^agents/{_AGENT}/sessions/cold(/[^/]+)+$"),
    re.compile(rf"^agents/{_AGENT}/agent/workshop-skills(/[^/]+)+$"),
    re.compile(rf"^workspaces/{_AGENT}(/[^/]+)+$"),
)
# Folders on the way to an allowed file (restoring creates them; nothing else may be a folder).
_ALLOWED_DIRS = re.compile(
    rf"^(agents|workspaces|agents/{_AGENT}|agents/{_AGENT}/agent|agents/{_AGENT}/sessions"
    rf"|agents/{_AGENT}/sessions/cold|agents/{_AGENT}/agent/workshop-skills|workspaces/{_AGENT})$"
)
Kind = Literal["file", "dir", "symlink", "other"]


class SnapshotError(GatewayError):
    """A snapshot could not be taken or restored; the message says why (never a secret)."""


class SnapshotRefused(SnapshotError):
    """Taking the snapshot would break a rule (too large, a credential inside)."""


class SnapshotCorrupt(SnapshotError):
    """The archive is not what was uploaded, or not an archive we would write."""


@dataclass(frozen=True)
class Limits:
    # The uncompressed total of all files, and how many members an archive may have.
    max_bytes: int = 512 * 1024 * 1024
    max_members: int = 20_000


@dataclass(frozen=True)
class Entry:
    """A path under the state directory as seen on disk (never following symlinks)."""

    path: str  # relative, "/"-separated
    kind: Kind
    size: int = 0


@dataclass(frozen=True)
class ArchivePlan:
    files: tuple[Entry, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, why)
    total_bytes: int


@dataclass(frozen=True)
class ArchiveInfo:
    sha256: str
    size_bytes: int
    files: int
    total_bytes: int
    skipped: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RestoreInfo:
    files: int
    total_bytes: int
    agents: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- pure rules


def clean_path(name: str) -> str | None:
    """``name`` as a normalised relative path, or None if it is absolute, escapes, or is odd."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = PurePosixPath(name).parts
    if any(part in ("..", "") for part in parts):
        return None
    cleaned = "/".join(part for part in parts if part != ".")
    return cleaned or None


def is_allowed(path: str) -> bool:
    return any(pattern.fullmatch(path) for pattern in _ALLOWED)


def agent_of(path: str) -> str | None:
    parts = path.split("/")
    return parts[1] if len(parts) > 1 and parts[0] in ("agents", "workspaces") else None


def plan_archive(entries: Iterable[Entry], agent_ids: Sequence[str], limits: Limits) -> ArchivePlan:
    """Which entries go into an archive of ``agent_ids``; raises SnapshotRefused over the limits."""
    files: list[Entry] = []
    skipped: list[tuple[str, str]] = []
    total = 0
    for entry in sorted(entries, key=lambda e: e.path):
        path = clean_path(entry.path)
        if path is None or not is_allowed(path) or agent_of(path) not in agent_ids:
            continue
        if entry.kind == "symlink":
            skipped.append((path, "symlink (never followed)"))
            continue
        if entry.kind != "file":
            continue
        files.append(Entry(path, "file", entry.size))
        total += entry.size
    if total > limits.max_bytes:
        raise SnapshotRefused(f"the agent's state is {total} bytes; the snapshot limit is {limits.max_bytes}")
    if len(files) + 1 > limits.max_members:
        raise SnapshotRefused(f"the agent's state has {len(files)} files; the snapshot limit is {limits.max_members}")
    return ArchivePlan(tuple(files), tuple(skipped), total)


def check_member(name: str, kind: Kind, size: int) -> str | None:
    """Why an archive member must not be restored, or None when it may."""
    path = clean_path(name)
    if path is None:
        return f"{name!r} is not a safe relative path"
    if kind == "dir":
        return None if _ALLOWED_DIRS.fullmatch(path) or is_allowed(path) else f"{path!r} is not an allowed folder"
    if kind != "file":
        return f"{path!r} is a {kind}, not a regular file"
    if path == MANIFEST:
        return None
    if not is_allowed(path):
        return f"{path!r} is not an allowed path"
    if size < 0:
        return f"{path!r} has a negative size"
    return None


# --------------------------------------------------------------------------- taking a snapshot


def scan(state_dir: Path, agent_ids: Sequence[str]) -> Iterator[Entry]:
    """Every path under the allow-listed roots of ``agent_ids``, without following symlinks."""
    roots = [f"agents/{a}/agent/{AGENT_DB}" for a in agent_ids]
    roots += [f"agents/{a}/sessions/cold" for a in agent_ids]
    roots += [f"agents/{a}/agent/workshop-skills" for a in agent_ids]
    roots += [f"workspaces/{a}" for a in agent_ids]
    for root in roots:
        yield from _walk(state_dir, root)


def _walk(state_dir: Path, relative: str) -> Iterator[Entry]:
    path = state_dir / relative
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    yield _entry(relative, st)
    if path.is_dir() and not path.is_symlink():
        for child in sorted(os.scandir(path), key=lambda d: d.name):
            yield from _walk(state_dir, f"{relative}/{child.name}")


def _entry(relative: str, st: os.stat_result) -> Entry:
    if stat.S_ISLNK(st.st_mode):
        return Entry(relative, "symlink")
    if stat.S_ISDIR(st.st_mode):
        return Entry(relative, "dir")
    if stat.S_ISREG(st.st_mode):
        return Entry(relative, "file", st.st_size)
    return Entry(relative, "other")


def write_archive(
    state_dir: Path,
    agent_ids: Sequence[str],
    dest: Path,
    *,
    limits: Limits = Limits(),
    secrets: Sequence[str] = (),
    scratch: Path | None = None,
) -> ArchiveInfo:
    """Archive the agents' state into ``dest`` (tar.gz); returns its checksum and size.

    Raises SnapshotRefused if a file holds one of ``secrets`` (6+ characters) or the state is over
    the limits, and SnapshotError when the state cannot be read.
    """
    plan = plan_archive(scan(state_dir, agent_ids), agent_ids, limits)
    needles = [s.encode() for s in secrets if len(s) >= 6]
    work = Path(scratch or dest.parent) / f".snapshot-{_secrets.token_hex(6)}"
    work.mkdir(mode=0o700, parents=True)
    try:
        manifest = {
            "formatVersion": SNAPSHOT_FORMAT,
            "agents": sorted(agent_ids),
            "createdAt": int(time.time() * 1000),
            "files": [entry.path for entry in plan.files],
        }
        with tarfile.open(dest, "w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=1).encode())
            for entry in plan.files:
                source = _stable_copy(state_dir / entry.path, work) if entry.path.endswith(AGENT_DB) else None
                readable = source or state_dir / entry.path
                if _holds_secret(readable, needles):
                    raise SnapshotRefused(f"{entry.path} holds a credential; the snapshot would leak it")
                _add_file(tar, entry.path, readable)
        size, sha256 = _digest(dest)
    except OSError as exc:
        raise SnapshotError(f"cannot archive the agent state in {state_dir}: {exc.strerror or exc}") from exc
    except sqlite3.Error as exc:
        raise SnapshotError(f"cannot copy the agent database: {exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ArchiveInfo(sha256, size, len(plan.files), plan.total_bytes, plan.skipped)


def _stable_copy(db: Path, work: Path) -> Path:
    """A consistent copy of a live SQLite database (its WAL included), via the backup API."""
    copy = work / f"{_secrets.token_hex(4)}.sqlite"
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()
    return copy


def _holds_secret(path: Path, needles: Sequence[bytes]) -> bool:
    if not needles:
        return False
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-overlap:] if overlap else b""
    return False


def _member(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    info.mode = 0o700 if kind == tarfile.DIRTYPE else 0o600
    info.mtime = int(time.time())
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_member(name, len(data)), io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, name: str, source: Path) -> None:
    with source.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        tar.addfile(_member(name, size), handle)


def _digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


# --------------------------------------------------------------------------- restoring


def has_state(state_dir: Path, agent_id: str) -> bool:
    """Whether the gateway already keeps sessions for ``agent_id`` here (then nothing is restored)."""
    return (state_dir / "agents" / agent_id / "agent" / AGENT_DB).exists()


def restore_archive(
    archive: Path, state_dir: Path, *, sha256: str, size_bytes: int, limits: Limits = Limits()
) -> RestoreInfo:
    """Check ``archive`` and unpack it into ``state_dir``; raises SnapshotCorrupt and changes
    nothing when any check fails. Call it before the gateway opens the state directory."""
    size, digest = _digest(archive)
    if size != size_bytes:
        raise SnapshotCorrupt(f"the archive is {size} bytes, not the {size_bytes} recorded")
    if digest != sha256:
        raise SnapshotCorrupt(f"the archive's sha256 is {digest[:12]}…, not the {sha256[:12]}… recorded")
    staging = state_dir / f".restore-{_secrets.token_hex(6)}"
    staging.mkdir(mode=0o700, parents=True)
    try:
        files, total = _unpack(archive, staging, limits)
        for db in staging.glob(f"agents/*/agent/{AGENT_DB}"):
            _check_database(db)
        agents = sorted({a for f in files if (a := agent_of(f)) is not None})
        for relative in files:
            _move_into_place(staging / relative, state_dir / relative)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return RestoreInfo(len(files), total, tuple(agents))


def _unpack(archive: Path, staging: Path, limits: Limits) -> tuple[list[str], int]:
    files: list[str] = []
    total = 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for count, member in enumerate(tar, start=1):
                kind: Kind = "file" if member.isreg() else "dir" if member.isdir() else "other"
                if member.issym() or member.islnk():
                    kind = "symlink"
                problem = check_member(member.name, kind, member.size)
                if problem is not None:
                    raise SnapshotCorrupt(f"archive member refused: {problem}")
                total += member.size
                if total > limits.max_bytes or count > limits.max_members:
                    raise SnapshotCorrupt(f"the archive unpacks past the limit ({limits.max_bytes} bytes)")
                path = clean_path(member.name)
                if kind == "file" and path is not None and path != MANIFEST:
                    _extract(tar, member, staging / path)
                    files.append(path)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise SnapshotCorrupt(f"the archive cannot be read: {exc}") from exc
    return files, total


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    if source is None:
        raise SnapshotCorrupt(f"archive member {member.name!r} has no data")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out, source:
        shutil.copyfileobj(source, out, 1 << 20)


def _check_database(db: Path) -> None:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            verdict = conn.execute("PRAGMA quick_check").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise SnapshotCorrupt(f"{db.name} in the archive is not a usable database: {exc}") from exc
    if verdict is None or verdict[0] != "ok":
        raise SnapshotCorrupt(f"{db.name} in the archive fails SQLite's integrity check")


def _move_into_place(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.name == AGENT_DB:
        # A journal left from another database would be replayed into this one: remove it.
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                target.with_name(target.name + suffix).unlink()
    os.replace(source, target)
