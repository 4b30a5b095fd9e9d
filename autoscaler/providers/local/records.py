"""Launch records on disk: ``<state_dir>/<launch>.json``, written atomically, changed under one ``flock``."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

from autoscaler.providers.local.errors import io_error

_log = structlog.get_logger(__name__)

# Launch ids that are already safe file names are used as-is (readable for operators).
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
RECORD_SUFFIX = ".json"
_LOCK_NAME = ".lock"

ExitCode = int | Literal["unknown"]


class LaunchRecord(BaseModel):
    """One launch as ``<state_dir>/<launch>.json`` holds it. Never holds the environment."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    version: int = 1
    launch_id: str
    machine_id: str
    worker_id: str
    pid: int
    # Field 22 of /proc/<pid>/stat: with the pid and boot id, the identity of the process.
    pid_start_ticks: int
    boot_id: str | None = None
    started_at: datetime
    log_path: str
    command: tuple[str, ...] = ()
    stop_requested_at: datetime | None = None
    exited_at: datetime | None = None
    # None while running; an int (negative: killed by that signal) or "unknown" once it exited.
    exit_code: ExitCode | None = None


def record_path(state_dir: Path, launch_id: str) -> Path:
    if _SAFE_STEM.fullmatch(launch_id):
        stem = launch_id
    else:
        digest = hashlib.sha256(launch_id.encode()).hexdigest()[:16]
        stem = f"{(_NOT_SLUG.sub('-', launch_id).strip('-.') or 'launch')[:60]}-{digest}"
    return state_dir / f"{stem}{RECORD_SUFFIX}"


def read_record(path: Path) -> LaunchRecord | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _log.warning("unreadable launch record", path=str(path), error=str(exc))
        return None
    try:
        return LaunchRecord.model_validate_json(raw)
    except ValidationError:
        _log.warning("skipping a malformed launch record", path=str(path))
        return None


def write_atomic(path: Path, record: LaunchRecord) -> None:
    """Write the record to a temporary file, fsync it, rename it over ``path``, fsync the directory."""
    data = json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n"
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb", opener=_private) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


@contextlib.contextmanager
def locked(state_dir: Path, operation: str) -> Iterator[None]:
    """Hold the ``flock`` on ``<state_dir>/.lock``: two processes never change the records at once."""
    try:
        fd = os.open(state_dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise io_error(operation, f"cannot open {state_dir / _LOCK_NAME}", exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
