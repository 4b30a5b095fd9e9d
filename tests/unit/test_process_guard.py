"""The guard of a managed child (gateway.process): when our process dies without stopping the
child, the guard ends the child's whole process group after its grace; a normal stop ends the
guard too. Real processes throughout (a shell and a sleep, no gateway)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.process import ManagedProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the guard is Linux-only")

GRACE_S = 1.0
# The child and its grandchild ignore SIGTERM (an ignored signal stays ignored across exec), so the
# SIGTERM our death sends the child cannot end them: only the guard's SIGKILL to the group can.
STUBBORN = "trap '' TERM; sleep 300 & echo $! > grandchild.pid; wait"
# The process that dies: it spawns the child, prints the pids and waits to be killed.
OWNER = """
import sys, time
from pathlib import Path
from gateway.process import ManagedProcess
work, grace = Path(sys.argv[1]), float(sys.argv[2])
child = ManagedProcess.spawn(
    "stubborn", ["/bin/sh", "-c", sys.argv[3]], env={}, cwd=work, output=work / "logs" / "child.out",
    guard_grace_s=grace,
)
print("pids", child.pid, child.guard_pid, flush=True)
time.sleep(300)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's new parent may be slow to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _group(pgid: int) -> set[int]:
    """The running members of process group ``pgid``."""
    members = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.add(int(entry.name))
    return members


def _wait_until(check: Callable[[], object], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_guard_ends_the_group_after_its_grace_when_the_owner_is_killed(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path), str(GRACE_S), STUBBORN],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    child = 0
    try:
        assert owner.stdout is not None
        line = owner.stdout.readline()
        while line and not line.startswith("pids "):  # structlog's debug lines come first
            line = owner.stdout.readline()
        _, child_pid, guard_pid = line.split()
        child, guard = int(child_pid), int(guard_pid)
        pid_file = tmp_path / "grandchild.pid"
        _wait_until(lambda: pid_file.is_file() and pid_file.read_text().strip(), 30)
        grandchild = int(pid_file.read_text())
        assert _group(child) == {child, grandchild}
        assert _running(guard)

        owner.kill()
        owner.wait()
        killed_at = time.monotonic()
        survivors = _group(child)
        if time.monotonic() - killed_at < GRACE_S:
            # Within the grace the child is left alone: it may still end on its own.
            assert survivors == {child, grandchild}

        _wait_until(lambda: not _group(child) and not _running(guard), GRACE_S + 30)
        assert _group(child) == set()
        assert not _running(guard)
    finally:
        owner.kill()
        owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()
        if child:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child, signal.SIGKILL)


def test_a_normal_stop_ends_the_group_and_leaves_no_guard(tmp_path: Path) -> None:
    process = ManagedProcess.spawn(
        "sleeper", ["/bin/sh", "-c", "sleep 300 & wait"], env={}, cwd=tmp_path, output=tmp_path / "logs" / "out"
    )
    guard = process.guard_pid
    assert guard is not None
    try:
        _wait_until(lambda: len(_group(process.pid)) == 2, 30)
        assert len(_group(process.pid)) == 2  # the shell and its sleep
        assert _running(guard)

        process.stop(5.0)

        assert _group(process.pid) == set()
        assert not _running(guard)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
