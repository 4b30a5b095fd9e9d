"""A child process we own: spawned in its own process group, stopped with SIGTERM, then SIGKILL.

The gateway forks helper processes (spawn broker, SQLite workers). Its own SIGTERM handling
takes them down, and a final SIGKILL to the group (whose id is the child's pid, because the child
leads a new session) catches any helper a crash left behind. Only that group is ever signalled.

If *we* die without stopping it (``kill -9``, an OOM kill), the child must not live on as an
orphan: on Linux it is told to take SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), set in
the child between fork and exec, so no window exists in which our death goes unnoticed. The
kernel ties that to the *thread* that forked: spawn from a thread that lives as long as the
process (the main thread), never from a worker thread that may exit early.

A child killed that way mid-start may leave its own helpers behind (the gateway's SQLite helper
outlived it once), and nothing of ours is left to signal the group. So a small guard process
(its own session; a process may not join a group in another session) is told the same way of
our death: it gives the child ``GUARD_GRACE_S`` to end on its own, then SIGKILLs the child's
group. A normal ``stop`` ends the guard after the group.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import structlog

_log = structlog.get_logger(__name__)
_PR_SET_PDEATHSIG = 1
GUARD_GRACE_S = 5.0
# The guard: told of our death like the child, it waits the grace, then ends the whole group.
_GUARD = """
import ctypes, os, signal, sys, time
group, grace, parent = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
def end(*_):
    time.sleep(grace)
    try:
        os.killpg(group, signal.SIGKILL)
    finally:
        os._exit(0)
signal.signal(signal.SIGTERM, end)
ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)
if os.getppid() != parent:
    end()
while True:
    signal.pause()
"""


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking the kernel to SIGTERM the child when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # we died before the hook ran: the signal would never come
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class ManagedProcess:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], guard: subprocess.Popen[bytes] | None) -> None:
        self.name = name
        self._popen = popen
        self._guard = guard

    @classmethod
    def spawn(
        cls,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        output: Path,
        stdout_pipe: bool = False,
        guard_grace_s: float = GUARD_GRACE_S,
    ) -> ManagedProcess:
        """Start ``args``; stderr (and stdout, unless piped) are appended to ``output``. Call it from
        the main thread: the child is ended when the thread that spawned it ends (see the module).
        ``guard_grace_s``: how long the guard lets the child end on its own after our death.

        ``output`` is created 0600 in a 0700 folder: a gateway's console holds conversation text."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(f"spawn {name} from the main thread: the child dies with the thread that spawns it")
        output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(output, "ab", opener=_private) as sink:
            popen = subprocess.Popen(
                list(args),
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else sink,
                stderr=sink,
                # Its own group: a Ctrl-C at our terminal reaches us, and we stop it in order.
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        _log.debug("openclaw.process.spawned", name=name, pid=popen.pid)
        return cls(name, popen, _guard(popen.pid, guard_grace_s))

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def guard_pid(self) -> int | None:
        """The guard's pid (None where there is none: not Linux, or it could not start)."""
        return self._guard.pid if self._guard is not None else None

    @property
    def stdout(self) -> int:
        if self._popen.stdout is None:
            raise RuntimeError(f"{self.name} was not started with a stdout pipe")
        return self._popen.stdout.fileno()

    def exit_code(self) -> int | None:
        return self._popen.poll()

    def stop(self, grace_s: float) -> int:
        """SIGTERM, wait up to ``grace_s``, then SIGKILL; always reaps. Returns the exit code."""
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _log.warning("openclaw.process.kill", name=self.name, pid=self.pid, grace_s=grace_s)
                self._signal_group(signal.SIGKILL)
                self._popen.wait()
        # Helpers that outlived their parent: same group, nothing else.
        self._signal_group(signal.SIGKILL)
        if self._guard is not None:
            self._guard.kill()
            self._guard.wait()
        if self._popen.stdout is not None:
            self._popen.stdout.close()
        return self._popen.returncode

    def _signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)


def _guard(group: int, grace_s: float) -> subprocess.Popen[bytes] | None:
    """The group's guard (Linux only; see the module), with no settings of ours."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-c", _GUARD, str(group), str(grace_s), str(os.getpid())],
            env={},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError:
        _log.warning("openclaw.process.unguarded", group=group)
        return None
