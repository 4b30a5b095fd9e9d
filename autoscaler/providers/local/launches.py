"""The launches under one ``state_dir``: their records read and changed under the lock, synchronously.

Every method blocks (file locks, ``/proc``, process spawning): ``LocalProvider`` calls them in
worker threads.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
from datetime import UTC, datetime
from pathlib import Path

import structlog

from autoscaler.errors import ProviderError
from autoscaler.provider import LaunchSpec, Machine, MachineState
from autoscaler.providers.local.config import PROVIDER, LocalConfig, child_env
from autoscaler.providers.local.errors import io_error
from autoscaler.providers.local.procs import Seen, kill_child, probe, read_stat, reap, send_signal, spawn
from autoscaler.providers.local.records import (
    RECORD_SUFFIX,
    ExitCode,
    LaunchRecord,
    locked,
    read_record,
    record_path,
    write_atomic,
)

_log = structlog.get_logger(__name__)


class Launches:
    """Launch records in ``state_dir`` and the worker processes they own."""

    def __init__(self, config: LocalConfig, state_dir: Path, boot_id: str | None) -> None:
        self._config = config
        self._dir = state_dir
        self._boot_id = boot_id

    # -- create ---------------------------------------------------------------------------------

    def create(self, spec: LaunchSpec) -> Machine:
        machine_id = f"local-{secrets.token_hex(6)}"
        env = child_env(self._config, spec, machine_id)
        try:
            self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise io_error("create", f"cannot create state dir {self._dir}", exc) from None
        with locked(self._dir, "create"):
            path = record_path(self._dir, spec.launch_id)
            existing = read_record(path)
            if existing is not None:
                return self._adopt(path, existing, spec)
            started_at = datetime.now(UTC)
            log_path = path.with_suffix(".log")
            pid = spawn(self._config.command, env, log_path)
            stat = read_stat(pid)
            if stat is None:
                reap(pid)
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
                write_atomic(path, record)
            except OSError as exc:
                # A worker without a record would be invisible to list: take it down again.
                kill_child(pid)
                raise io_error("create", f"cannot write launch record {path}", exc) from None
        _log.info(
            "local worker started",
            launch_id=spec.launch_id,
            machine_id=machine_id,
            worker_id=spec.worker_id,
            pid=pid,
            log=str(log_path),
        )
        return self._machine(record, Seen(alive=True))

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

    # -- observe --------------------------------------------------------------------------------

    def machines(self) -> list[Machine]:
        if not self._dir.is_dir():
            return []
        machines: list[Machine] = []
        with locked(self._dir, "list"):
            for path in sorted(self._dir.glob(f"*{RECORD_SUFFIX}")):
                if path.name.startswith("."):
                    continue
                record = read_record(path)
                if record is None:
                    continue
                record, seen = self._refresh(path, record)
                machines.append(self._machine(record, seen))
        machines.sort(key=lambda machine: (machine.created_at_ms or 0, machine.machine_id))
        return machines

    def find(self, launch_id: str) -> Machine | None:
        found = self._lookup(launch_id)
        return self._machine(*found) if found is not None else None

    def record(self, launch_id: str) -> LaunchRecord | None:
        found = self._lookup(launch_id)
        return found[0] if found is not None else None

    def seen(self, record: LaunchRecord) -> Seen:
        return probe(record, self._boot_id)

    def _lookup(self, launch_id: str) -> tuple[LaunchRecord, Seen] | None:
        path = record_path(self._dir, launch_id)
        if not path.exists():
            return None
        with locked(self._dir, "find"):
            record = read_record(path)
            if record is None or record.launch_id != launch_id:
                return None
            return self._refresh(path, record)

    def _refresh(self, path: Path, record: LaunchRecord) -> tuple[LaunchRecord, Seen]:
        """Look at the process (reaping it if it is our exited child); persist an exit once seen.

        Call with the lock held.
        """
        seen = self.seen(record)
        if seen.alive:
            return record, seen
        code: ExitCode = seen.exit_code if seen.exit_code is not None else "unknown"
        if record.exit_code is None or (record.exit_code == "unknown" and code != "unknown"):
            record = record.model_copy(update={"exit_code": code, "exited_at": record.exited_at or datetime.now(UTC)})
            try:
                write_atomic(path, record)
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

    def _state(self, record: LaunchRecord, seen: Seen) -> MachineState:
        if seen.alive:
            return "stopping" if record.stop_requested_at is not None else "running"
        code = record.exit_code if record.exit_code is not None else seen.exit_code
        if isinstance(code, int) and code != 0 and record.stop_requested_at is None:
            ended = record.exited_at or datetime.now(UTC)
            if (ended - record.started_at).total_seconds() <= self._config.failed_window_s:
                return "failed"
        return "stopped"

    def _machine(self, record: LaunchRecord, seen: Seen) -> Machine:
        return Machine(
            machine_id=record.machine_id,
            provider=PROVIDER,
            state=self._state(record, seen),
            launch_id=record.launch_id,
            created_at_ms=int(record.started_at.timestamp() * 1000),
            worker_id=record.worker_id,
        )

    # -- stop and destroy -----------------------------------------------------------------------

    def stop(self, machine: Machine) -> None:
        with locked(self._dir, "stop"):
            located = self._locate(machine)
            if located is None:
                return
            path, record = located
            record, seen = self._refresh(path, record)
            if not seen.alive or record.stop_requested_at is not None:
                # A second SIGTERM would make the worker abandon its job: ask once.
                return
            self._request_stop(path, record, "stop")

    def term_for_destroy(self, machine: Machine) -> LaunchRecord | None:
        """SIGTERM (unless already asked) and return the record to wait on; None if nothing exists."""
        with locked(self._dir, "destroy"):
            located = self._locate(machine)
            if located is None:
                return None
            path, record = located
            record, seen = self._refresh(path, record)
            if seen.alive and record.stop_requested_at is None:
                record = self._request_stop(path, record, "destroy")
            return record

    def send(self, record: LaunchRecord, sig: signal.Signals, group: bool) -> bool:
        """Send ``sig`` to the record's process if (and only if) it is still that process."""
        return send_signal(record, self._boot_id, sig, group)

    def remove(self, record: LaunchRecord) -> None:
        with locked(self._dir, "destroy"):
            path = record_path(self._dir, record.launch_id)
            current = read_record(path)
            if current is not None and current.machine_id == record.machine_id:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if not self._config.keep_logs:
                with contextlib.suppress(FileNotFoundError):
                    Path(record.log_path).unlink()

    def _request_stop(self, path: Path, record: LaunchRecord, operation: str) -> LaunchRecord:
        record = record.model_copy(update={"stop_requested_at": datetime.now(UTC)})
        # Recorded before the signal, so no later call ever sends a second one.
        try:
            write_atomic(path, record)
        except OSError as exc:
            raise io_error(operation, f"cannot update launch record {path}", exc) from None
        if self.send(record, signal.SIGTERM, False):
            _log.info(
                "local worker asked to stop",
                launch_id=record.launch_id,
                machine_id=record.machine_id,
                pid=record.pid,
                operation=operation,
            )
        return record

    def _locate(self, machine: Machine) -> tuple[Path, LaunchRecord] | None:
        """The record of ``machine``: by its launch id, else by a scan for its machine id."""
        if machine.launch_id:
            path = record_path(self._dir, machine.launch_id)
            record = read_record(path)
            if record is not None and record.machine_id == machine.machine_id:
                return path, record
        if not self._dir.is_dir():
            return None
        for path in self._dir.glob(f"*{RECORD_SUFFIX}"):
            record = read_record(path)
            if record is not None and record.machine_id == machine.machine_id:
                return path, record
        return None
