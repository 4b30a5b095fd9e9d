"""Local provider, the embedded default: each "machine" is a ``factory worker run`` process here.

Ownership is a launch record: ``create`` starts the worker in its own session (so the
``factory reconcile`` that started it may exit while the worker runs on), with stdout and stderr
appended to ``<state_dir>/<launch>.log``, and writes ``<state_dir>/<launch>.json`` atomically
before it returns. The record holds the pid *and* the process's start time (field 22 of
``/proc/<pid>/stat``, in clock ticks since boot) and the kernel's boot id; a pid counts as our
worker only while all three match, so a pid the kernel has handed to another process is never
mistaken for ours and never signalled. Signals go through a pidfd opened before that check, so the
check and the signal refer to one process.

State, as ``list``/``find`` report it::

    running    alive, and its start time matches the record
    stopping   alive, and ``stop`` (or ``destroy``) asked it to finish
    stopped    exited (the record stays until ``destroy``, so the reconciler sees it ended)
    failed     exited non-zero, unasked, within ``failed_window_s`` of its start

An exited worker that is a child of this process is reaped (no zombies) and its exit code kept in
the record. A worker started by an earlier ``factory reconcile`` is not our child: its exit code
is read from ``/proc`` while it is a zombie of some other parent, and is otherwise recorded as
``"unknown"`` (reported ``stopped``).

Mutations of ``state_dir`` hold an ``flock`` on ``<state_dir>/.lock``, so two processes (a cron
reconcile and an operator's) never start one launch twice nor resurrect a removed record. Blocking
file and process work runs in worker threads; waits for an exit poll with ``anyio.sleep``.
``aclose`` never stops workers: they belong to the fleet. ``destroy_all`` is for callers such as
``factory run`` that must leave nothing behind.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.to_thread
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autoscaler.errors import ProviderConfigError, ProviderError
from autoscaler.provider import LaunchSpec, Machine, MachineState
from autoscaler.providers._common import LAUNCH_ID_ENV, WORKER_ID_ENV, worker_env

__all__ = ["LaunchRecord", "LocalConfig", "LocalProvider"]

T = TypeVar("T")

_log = structlog.get_logger(__name__)

PROVIDER = "local"
PROVIDER_ENV = "FACTORY_WORKER_PROVIDER"
MACHINE_ID_ENV = "FACTORY_MACHINE_ID"
_IDENTITY_ENV = frozenset({WORKER_ID_ENV, LAUNCH_ID_ENV, PROVIDER_ENV, MACHINE_ID_ENV})

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Launch ids that are already safe file names are used as-is (readable for operators).
_SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_NOT_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")
_RECORD_SUFFIX = ".json"
_LOCK_NAME = ".lock"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# After SIGKILL a process is gone within milliseconds unless stuck in the kernel (D state).
_KILL_WAIT_S = 5.0
_POLL_FIRST_S = 0.02
_POLL_MAX_S = 0.25
# Signals a spawned worker starts with at their default action, whatever this process ignores.
_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)

ExitCode = int | Literal["unknown"]


def _default_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "factory", "worker", "run")


class LocalConfig(BaseModel):
    """Everything the local provider needs; built by the composition root."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Launch records (<launch>.json) and worker logs (<launch>.log); relative to the working directory.
    state_dir: Path = Path(".factory/local")
    # The worker's argv; argv[0] is looked up on PATH when it has no slash.
    command: tuple[str, ...] = Field(default_factory=_default_command, min_length=1)
    # destroy: SIGTERM, this long for the worker to drain (its grace is 30 s by default), then SIGKILL.
    stop_timeout_s: float = Field(default=40.0, gt=0)
    # The worker starts from this process's environment (minus ``unset_env``) when true, else from nothing.
    inherit_env: bool = True
    # Removed from the inherited environment: credentials a worker has no business holding.
    unset_env: tuple[str, ...] = ("FLY_API_TOKEN", "DIGITALOCEAN_TOKEN")
    # Added for every worker, under each spec's own env (a spec wins over these).
    env: dict[str, str] = Field(default_factory=dict)
    # A non-zero exit nobody asked for, this soon after the start, is ``failed`` (a crash at boot).
    failed_window_s: float = Field(default=60.0, ge=0)
    # destroy removes the record; the worker's log stays for a post-mortem unless this is false.
    keep_logs: bool = True

    @field_validator("command")
    @classmethod
    def _command_present(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].strip():
            raise ValueError("argv[0] is empty")
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in _IDENTITY_ENV:
                raise ValueError(f"{key!r} is set by the provider itself")
        return value


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


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    pgrp: int
    start_ticks: int
    wait_status: int | None


@dataclass(frozen=True)
class _Seen:
    """What ``/proc`` says about a record's process right now."""

    alive: bool
    exit_code: int | None = None


class LocalProvider:
    """``autoscaler.provider.Provider`` for worker processes on this machine (Linux: needs /proc)."""

    def __init__(self, config: LocalConfig | None = None) -> None:
        self._config = config if config is not None else LocalConfig()
        if not Path("/proc/self/stat").exists():
            raise ProviderConfigError("provider", "the local provider needs Linux /proc")
        self._dir = self._config.state_dir.expanduser().absolute()
        self._boot_id = _read_boot_id()

    @property
    def name(self) -> str:
        return PROVIDER

    @property
    def state_dir(self) -> Path:
        return self._dir

    async def aclose(self) -> None:
        """Reap workers of ours that already exited; running workers are left running."""
        try:
            await self._thread(self._list_sync)
        except (ProviderError, OSError) as exc:
            _log.warning("local provider close: could not reap exited workers", error=str(exc))

    # -- the Provider protocol ------------------------------------------------------------------

    async def create(self, spec: LaunchSpec) -> Machine:
        return await self._thread(self._create_sync, spec)

    async def list(self) -> builtins.list[Machine]:
        return await self._thread(self._list_sync)

    async def find(self, launch_id: str) -> Machine | None:
        return await self._thread(self._find_sync, launch_id)

    async def stop(self, machine: Machine) -> None:
        await self._thread(self._stop_sync, machine)

    async def destroy(self, machine: Machine) -> None:
        record = await self._thread(self._term_for_destroy, machine)
        if record is None:
            return
        remaining = self._config.stop_timeout_s
        if record.stop_requested_at is not None:
            # Asked earlier: the grace runs from that request, not from now.
            elapsed = (datetime.now(UTC) - record.stop_requested_at).total_seconds()
            remaining = max(0.0, remaining - max(0.0, elapsed))
        if not await self._wait_gone(record, remaining):
            _log.warning(
                "local worker ignored SIGTERM; killing it",
                launch_id=record.launch_id,
                machine_id=record.machine_id,
                pid=record.pid,
                stop_timeout_s=self._config.stop_timeout_s,
            )
            await self._thread(self._signal, record, signal.SIGKILL, True)
            if not await self._wait_gone(record, _KILL_WAIT_S):
                raise ProviderError(
                    PROVIDER,
                    "destroy",
                    f"pid {record.pid} of machine {record.machine_id} did not exit {_KILL_WAIT_S:g} s after SIGKILL",
                    retryable=True,
                )
        await self._thread(self._remove_sync, record)
        _log.info("local worker destroyed", launch_id=record.launch_id, machine_id=record.machine_id, pid=record.pid)

    # -- beyond the protocol --------------------------------------------------------------------

    async def destroy_all(self) -> int:
        """Destroy every machine in ``state_dir`` at once (SIGTERM all, then SIGKILL stragglers).

        For callers that must leave nothing behind (``factory run`` on exit). Returns how many
        machines were destroyed; raises one ``ProviderError`` after trying all of them if any failed.
        """
        machines = await self.list()
        failures: builtins.list[str] = []

        async def one(machine: Machine) -> None:
            try:
                await self.destroy(machine)
            except ProviderError as exc:
                failures.append(str(exc))

        async with anyio.create_task_group() as tg:
            for machine in machines:
                tg.start_soon(one, machine)
        if failures:
            raise ProviderError(
                PROVIDER,
                "destroy_all",
                f"{len(failures)} of {len(machines)} machine(s) not destroyed; first: {failures[0]}",
                retryable=True,
            )
        return len(machines)

    async def launch_record(self, launch_id: str) -> LaunchRecord | None:
        """The launch record as stored (pid, log path, exit code), after refreshing its exit."""
        return await self._thread(self._record_sync, launch_id)

    # -- internals: create ----------------------------------------------------------------------

    def _create_sync(self, spec: LaunchSpec) -> Machine:
        machine_id = f"local-{secrets.token_hex(6)}"
        env = self._child_env(spec, machine_id)
        try:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise _io_error("create", f"cannot create state dir {self._dir}", exc) from None
        with self._locked("create"):
            path = self._record_path(spec.launch_id)
            existing = self._read(path)
            if existing is not None:
                return self._adopt(path, existing, spec)
            started_at = datetime.now(UTC)
            log_path = path.with_suffix(".log")
            pid = self._spawn(env, log_path)
            stat = _read_stat(pid)
            if stat is None:
                _reap(pid)
                raise ProviderError(PROVIDER, "create", f"pid {pid} vanished before it could be recorded")
            record = LaunchRecord(
                launch_id=spec.launch_id,
                machine_id=machine_id,
                worker_id=spec.worker_id,
                pid=pid,
                pid_start_ticks=stat.start_ticks,
                boot_id=self._boot_id,
                started_at=started_at,
                log_path=str(log_path),
                command=self._config.command,
            )
            try:
                _write_atomic(path, record)
            except OSError as exc:
                # A worker without a record would be invisible to list: take it down again.
                _kill_child(pid)
                raise _io_error("create", f"cannot write launch record {path}", exc) from None
        _log.info(
            "local worker started",
            launch_id=spec.launch_id,
            machine_id=machine_id,
            worker_id=spec.worker_id,
            pid=pid,
            log=str(log_path),
        )
        return self._machine(record, _Seen(alive=True))

    def _adopt(self, path: Path, existing: LaunchRecord, spec: LaunchSpec) -> Machine:
        if existing.launch_id != spec.launch_id or existing.worker_id != spec.worker_id:
            raise ProviderError(
                PROVIDER,
                "create",
                f"launch record {path.name} belongs to launch {existing.launch_id!r} "
                f"(worker {existing.worker_id!r}), not to this spec",
            )
        record, seen = self._refresh(path, existing)
        # One launch id is one launch: an ended one is reported as ended, never started again.
        _log.info(
            "local create found the launch already started",
            launch_id=spec.launch_id,
            machine_id=record.machine_id,
            alive=seen.alive,
        )
        return self._machine(record, seen)

    def _child_env(self, spec: LaunchSpec, machine_id: str) -> dict[str, str]:
        """The worker's environment. Holds secrets in clear: pass it to spawn and drop it."""
        config = self._config
        for key in (PROVIDER_ENV, MACHINE_ID_ENV):
            if key in spec.env or key in spec.secret_env:
                raise ProviderConfigError(f"LaunchSpec.env.{key}", "is set by the local provider itself")
        own = worker_env(spec)
        env: dict[str, str] = dict(os.environ) if config.inherit_env else {}
        for key in config.unset_env:
            env.pop(key, None)
        env.update(config.env)
        env.update(own)
        env[PROVIDER_ENV] = PROVIDER
        env[MACHINE_ID_ENV] = machine_id
        return env

    def _spawn(self, env: dict[str, str], log_path: Path) -> int:
        argv = builtins.list(self._config.command)
        try:
            log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise _io_error("create", f"cannot open worker log {log_path}", exc) from None
        try:
            null_fd = os.open(os.devnull, os.O_RDONLY)
            try:
                return os.posix_spawnp(
                    argv[0],
                    argv,
                    env,
                    file_actions=[
                        (os.POSIX_SPAWN_DUP2, null_fd, 0),
                        (os.POSIX_SPAWN_DUP2, log_fd, 1),
                        (os.POSIX_SPAWN_DUP2, log_fd, 2),
                    ],
                    # Its own session and process group: a reconcile (or its terminal) may exit or
                    # be interrupted while the worker runs on.
                    setsid=True,
                    setsigmask=(),
                    setsigdef=_DEFAULT_SIGNALS,
                )
            finally:
                os.close(null_fd)
        except ValueError:
            # An argv or env entry with a NUL byte; the message names no value.
            raise ProviderConfigError("LaunchSpec.env", "an argument or value holds a NUL byte") from None
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EACCES, errno.ENOEXEC, errno.ENOTDIR):
                raise ProviderConfigError("LocalConfig.command", f"cannot run {argv[0]!r}: {exc.strerror}") from None
            raise _io_error("create", f"cannot start {argv[0]!r}", exc) from None
        finally:
            os.close(log_fd)

    # -- internals: observe ---------------------------------------------------------------------

    def _list_sync(self) -> builtins.list[Machine]:
        if not self._dir.is_dir():
            return []
        machines: builtins.list[Machine] = []
        with self._locked("list"):
            for path in sorted(self._dir.glob(f"*{_RECORD_SUFFIX}")):
                if path.name.startswith("."):
                    continue
                record = self._read(path)
                if record is None:
                    continue
                record, seen = self._refresh(path, record)
                machines.append(self._machine(record, seen))
        machines.sort(key=lambda machine: (machine.created_at_ms or 0, machine.machine_id))
        return machines

    def _find_sync(self, launch_id: str) -> Machine | None:
        found = self._lookup(launch_id)
        return self._machine(*found) if found is not None else None

    def _record_sync(self, launch_id: str) -> LaunchRecord | None:
        found = self._lookup(launch_id)
        return found[0] if found is not None else None

    def _lookup(self, launch_id: str) -> tuple[LaunchRecord, _Seen] | None:
        path = self._record_path(launch_id)
        if not path.exists():
            return None
        with self._locked("find"):
            record = self._read(path)
            if record is None or record.launch_id != launch_id:
                return None
            return self._refresh(path, record)

    def _refresh(self, path: Path, record: LaunchRecord) -> tuple[LaunchRecord, _Seen]:
        """Look at the process (reaping it if it is our exited child); persist an exit once seen.

        Call with the lock held.
        """
        seen = self._seen(record)
        if seen.alive:
            return record, seen
        code: ExitCode = seen.exit_code if seen.exit_code is not None else "unknown"
        if record.exit_code is None or (record.exit_code == "unknown" and code != "unknown"):
            record = record.model_copy(update={"exit_code": code, "exited_at": record.exited_at or datetime.now(UTC)})
            try:
                _write_atomic(path, record)
            except OSError as exc:
                _log.warning("could not record a worker's exit", launch_id=record.launch_id, error=str(exc))
            _log.info(
                "local worker exited",
                launch_id=record.launch_id,
                machine_id=record.machine_id,
                pid=record.pid,
                exit_code=code,
            )
        return record, seen

    def _seen(self, record: LaunchRecord) -> _Seen:
        if not self._same_boot(record):
            return _Seen(alive=False)
        stat = _read_stat(record.pid)
        if stat is None or stat.start_ticks != record.pid_start_ticks:
            # Gone, or the pid now belongs to another process: either way ours has ended.
            return _Seen(alive=False)
        if stat.state not in ("Z", "X"):
            return _Seen(alive=True)
        if stat.ppid == os.getpid():
            # Our own child (started by this process): collect it, so it does not linger as a zombie.
            return _Seen(alive=False, exit_code=_reap(record.pid))
        # A zombie of some other parent: the kernel still holds its wait status.
        status = stat.wait_status
        return _Seen(alive=False, exit_code=_exit_code(status) if status is not None else None)

    def _same_boot(self, record: LaunchRecord) -> bool:
        return record.boot_id is None or self._boot_id is None or record.boot_id == self._boot_id

    def _state(self, record: LaunchRecord, seen: _Seen) -> MachineState:
        if seen.alive:
            return "stopping" if record.stop_requested_at is not None else "running"
        code = record.exit_code if record.exit_code is not None else seen.exit_code
        if isinstance(code, int) and code != 0 and record.stop_requested_at is None:
            ended = record.exited_at or datetime.now(UTC)
            if (ended - record.started_at).total_seconds() <= self._config.failed_window_s:
                return "failed"
        return "stopped"

    def _machine(self, record: LaunchRecord, seen: _Seen) -> Machine:
        return Machine(
            machine_id=record.machine_id,
            provider=PROVIDER,
            state=self._state(record, seen),
            launch_id=record.launch_id,
            created_at_ms=int(record.started_at.timestamp() * 1000),
            worker_id=record.worker_id,
        )

    # -- internals: stop and destroy ------------------------------------------------------------

    def _stop_sync(self, machine: Machine) -> None:
        with self._locked("stop"):
            located = self._locate(machine)
            if located is None:
                return
            path, record = located
            record, seen = self._refresh(path, record)
            if not seen.alive or record.stop_requested_at is not None:
                # A second SIGTERM would make the worker abandon its job: ask once.
                return
            self._request_stop(path, record, "stop")

    def _term_for_destroy(self, machine: Machine) -> LaunchRecord | None:
        """SIGTERM (unless already asked) and return the record to wait on; None if nothing exists."""
        with self._locked("destroy"):
            located = self._locate(machine)
            if located is None:
                return None
            path, record = located
            record, seen = self._refresh(path, record)
            if seen.alive and record.stop_requested_at is None:
                record = self._request_stop(path, record, "destroy")
            return record

    def _request_stop(self, path: Path, record: LaunchRecord, operation: str) -> LaunchRecord:
        record = record.model_copy(update={"stop_requested_at": datetime.now(UTC)})
        # Recorded before the signal, so no later call ever sends a second one.
        try:
            _write_atomic(path, record)
        except OSError as exc:
            raise _io_error(operation, f"cannot update launch record {path}", exc) from None
        if self._signal(record, signal.SIGTERM, False):
            _log.info(
                "local worker asked to stop",
                launch_id=record.launch_id,
                machine_id=record.machine_id,
                pid=record.pid,
                operation=operation,
            )
        return record

    def _signal(self, record: LaunchRecord, sig: signal.Signals, group: bool) -> bool:
        """Send ``sig`` to the record's process if (and only if) it is still that process."""
        try:
            pidfd: int | None = os.pidfd_open(record.pid)
        except ProcessLookupError:
            return False
        except OSError:
            pidfd = None  # no pidfd support: fall back to kill, after the same identity check
        try:
            # Checked after the pidfd pinned the process: if the pid matches our start time now,
            # the pidfd refers to our worker and cannot be redirected by pid reuse.
            stat = _read_stat(record.pid)
            if (
                not self._same_boot(record)
                or stat is None
                or stat.start_ticks != record.pid_start_ticks
                or stat.state in ("Z", "X")
            ):
                return False
            if group and stat.pgrp == record.pid:
                # The worker leads its own group: take down anything it started, too.
                os.killpg(record.pid, sig)
            elif pidfd is not None:
                signal.pidfd_send_signal(pidfd, sig)
            else:
                os.kill(record.pid, sig)
            return True
        except ProcessLookupError:
            return False
        except OSError as exc:
            raise _io_error("signal", f"cannot send {sig.name} to pid {record.pid}", exc) from None
        finally:
            if pidfd is not None:
                os.close(pidfd)

    async def _wait_gone(self, record: LaunchRecord, timeout_s: float) -> bool:
        """Poll until the record's process has exited (reaping it when it is ours); False on timeout."""
        interval = _POLL_FIRST_S
        with anyio.move_on_after(timeout_s):
            while (await self._thread(self._seen, record)).alive:
                await anyio.sleep(interval)
                interval = min(interval * 2, _POLL_MAX_S)
            return True
        return not (await self._thread(self._seen, record)).alive

    def _remove_sync(self, record: LaunchRecord) -> None:
        with self._locked("destroy"):
            path = self._record_path(record.launch_id)
            current = self._read(path)
            if current is not None and current.machine_id == record.machine_id:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if not self._config.keep_logs:
                with contextlib.suppress(FileNotFoundError):
                    Path(record.log_path).unlink()

    def _locate(self, machine: Machine) -> tuple[Path, LaunchRecord] | None:
        """The record of ``machine``: by its launch id, else by a scan for its machine id."""
        if machine.launch_id:
            path = self._record_path(machine.launch_id)
            record = self._read(path)
            if record is not None and record.machine_id == machine.machine_id:
                return path, record
        if not self._dir.is_dir():
            return None
        for path in self._dir.glob(f"*{_RECORD_SUFFIX}"):
            record = self._read(path)
            if record is not None and record.machine_id == machine.machine_id:
                return path, record
        return None

    # -- internals: files -----------------------------------------------------------------------

    def _record_path(self, launch_id: str) -> Path:
        if _SAFE_STEM.fullmatch(launch_id):
            stem = launch_id
        else:
            digest = hashlib.sha256(launch_id.encode()).hexdigest()[:16]
            stem = f"{(_NOT_SLUG.sub('-', launch_id).strip('-.') or 'launch')[:60]}-{digest}"
        return self._dir / f"{stem}{_RECORD_SUFFIX}"

    def _read(self, path: Path) -> LaunchRecord | None:
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

    @contextlib.contextmanager
    def _locked(self, operation: str) -> Iterator[None]:
        try:
            fd = os.open(self._dir / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _io_error(operation, f"cannot open {self._dir / _LOCK_NAME}", exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    async def _thread(self, func: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(func, *args)


# -- /proc and process helpers ------------------------------------------------------------------


def _read_boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _read_stat(pid: int) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    # "pid (comm) state ppid pgrp session ..."; comm may hold spaces and parentheses.
    _, _, rest = raw.rpartition(")")
    fields = rest.split()
    try:
        return _Stat(
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            start_ticks=int(fields[19]),
            # Field 52 (Linux 3.5+): the wait status, meaningful once the process is a zombie.
            wait_status=int(fields[49]) if len(fields) > 49 else None,
        )
    except (IndexError, ValueError):
        return None


def _exit_code(status: int) -> int | None:
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        return None


def _reap(pid: int) -> int | None:
    """Collect our exited child's status without blocking; None when there is none to collect."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return _exit_code(status) if reaped == pid else None


def _kill_child(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _write_atomic(path: Path, record: LaunchRecord) -> None:
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


def _io_error(operation: str, what: str, exc: OSError) -> ProviderError:
    transient = exc.errno in (errno.EAGAIN, errno.ENOMEM, errno.EINTR, errno.ENOSPC)
    return ProviderError(PROVIDER, operation, f"{what}: {exc.strerror or exc}", retryable=transient)
