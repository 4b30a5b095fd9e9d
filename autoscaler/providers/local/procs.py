"""Worker processes through ``/proc``: spawning, identity (pid, start time, boot id), signals, reaping."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from autoscaler.errors import ProviderConfigError
from autoscaler.providers.local.errors import io_error
from autoscaler.providers.local.records import LaunchRecord

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# Signals a spawned worker starts with at their default action, whatever this process ignores.
_DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ)


@dataclass(frozen=True)
class Stat:
    state: str
    ppid: int
    pgrp: int
    start_ticks: int
    wait_status: int | None


@dataclass(frozen=True)
class Seen:
    """What ``/proc`` says about a record's process right now."""

    alive: bool
    exit_code: int | None = None


def read_boot_id() -> str | None:
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def read_stat(pid: int) -> Stat | None:
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
        return Stat(
            state=fields[0],
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            start_ticks=int(fields[19]),
            # Field 52 (Linux 3.5+): the wait status, meaningful once the process is a zombie.
            wait_status=int(fields[49]) if len(fields) > 49 else None,
        )
    except (IndexError, ValueError):
        return None


def same_boot(record: LaunchRecord, boot_id: str | None) -> bool:
    return record.boot_id is None or boot_id is None or record.boot_id == boot_id


def probe(record: LaunchRecord, boot_id: str | None) -> Seen:
    """Whether the record's process still runs; reaps it (and keeps its exit code) if it is our child."""
    if not same_boot(record, boot_id):
        return Seen(alive=False)
    stat = read_stat(record.pid)
    if stat is None or stat.start_ticks != record.pid_start_ticks:
        # Gone, or the pid now belongs to another process: either way ours has ended.
        return Seen(alive=False)
    if stat.state not in ("Z", "X"):
        return Seen(alive=True)
    if stat.ppid == os.getpid():
        # Our own child (started by this process): collect it, so it does not linger as a zombie.
        return Seen(alive=False, exit_code=reap(record.pid))
    # A zombie of some other parent: the kernel still holds its wait status.
    status = stat.wait_status
    return Seen(alive=False, exit_code=_exit_code(status) if status is not None else None)


def send_signal(record: LaunchRecord, boot_id: str | None, sig: signal.Signals, group: bool) -> bool:
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
        stat = read_stat(record.pid)
        if (
            not same_boot(record, boot_id)
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
        raise io_error("signal", f"cannot send {sig.name} to pid {record.pid}", exc) from None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def spawn(command: tuple[str, ...], env: dict[str, str], log_path: Path) -> int:
    """Start ``command`` in its own session, stdin from /dev/null, stdout and stderr appended to the log."""
    argv = list(command)
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as exc:
        raise io_error("create", f"cannot open worker log {log_path}", exc) from None
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
        raise io_error("create", f"cannot start {argv[0]!r}", exc) from None
    finally:
        os.close(log_fd)


def _exit_code(status: int) -> int | None:
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        return None


def reap(pid: int) -> int | None:
    """Collect our exited child's status without blocking; None when there is none to collect."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return _exit_code(status) if reaped == pid else None


def kill_child(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
