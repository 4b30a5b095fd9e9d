"""A cross-process doorbell: writers ring it after a commit that may have made work claimable.

Each waiting store binds one Linux abstract-namespace datagram socket and lists its name as an
empty file in ``<db>.bell/``. Ringing sends one byte to every listed socket, without blocking;
a name nobody listens on any more (a crashed worker) is removed on the spot. Abstract sockets
leave nothing to clean up on disk and are free of the 108-byte socket path limit.

A store has a second bell, ``<db>.idle/``, rung when a worker is left with no job. Only the
reconciler's watch listens to it, so that idle workers are not woken by one another's finishing.

A ring is a hint, never a promise: waiters re-check the store, and poll slowly in any case.

Rings are frequent (a busy worker's completes ring), so a ring lists the folder only when it
changed: one ``stat`` per ring, a listing only after a waiter came or went. A folder's mtime is
stamped from the kernel's coarse clock, so a listing taken within :data:`_RACY_NS` of the mtime it
saw may have missed a name added in the same tick; such a listing is never reused.
Where abstract sockets do not exist (not Linux), the bell is silent and the slow poll remains.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import time
from pathlib import Path

import anyio

_SUPPORTED = sys.platform.startswith("linux")
# Coarser than any kernel's timestamp granularity (a jiffy is at most 10 ms).
_RACY_NS = 50_000_000


class Doorbell:
    def __init__(self, db_path: Path, kind: str = "bell") -> None:
        self._dir = Path(f"{db_path}.{kind}")
        self._sock: socket.socket | None = None
        self._name: str | None = None
        # The last listing reused while the folder's mtime stays what it was: (mtime, names).
        self._listed: tuple[int, list[str]] | None = None

    def ring(self) -> None:
        if not _SUPPORTED:
            return
        names = self._names()
        if not names:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as out:
            out.setblocking(False)
            for name in names:
                if name == self._name:
                    continue
                try:
                    out.sendto(b"!", b"\0" + name.encode())
                except BlockingIOError:
                    pass  # its queue is full: it has been rung already
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(FileNotFoundError):
                        (self._dir / name).unlink()

    def _names(self) -> list[str]:
        """The waiters listed in the folder: the last listing while the folder is unchanged."""
        try:
            mtime = os.stat(self._dir).st_mtime_ns
        except FileNotFoundError:
            return []
        if self._listed is not None and self._listed[0] == mtime:
            return self._listed[1]
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return []
        settled = time.time_ns() - mtime > _RACY_NS
        self._listed = (mtime, names) if settled else None
        return names

    def _listen(self) -> socket.socket | None:
        if not _SUPPORTED:
            return None
        if self._sock is None:
            # Only the store's owner may list (and so ring) the workers waiting on it.
            self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = f"factory-bell-{os.getpid()}-{secrets.token_hex(6)}"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.bind(b"\0" + name.encode())
            sock.setblocking(False)
            (self._dir / name).touch(mode=0o600)
            self._sock, self._name = sock, name
        return self._sock

    async def wait(self, timeout_s: float) -> bool:
        """Wait for a ring or the timeout; True when rung. Rings queued meanwhile are drained."""
        sock = self._listen()
        if sock is None:
            await anyio.sleep(timeout_s)
            return False
        if self._drain(sock):
            return True
        with anyio.move_on_after(timeout_s):
            await anyio.wait_readable(sock)
            self._drain(sock)
            return True
        return False

    @staticmethod
    def _drain(sock: socket.socket) -> bool:
        rung = False
        while True:
            try:
                sock.recv(64)
                rung = True
            except BlockingIOError:
                return rung

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                (self._dir / str(self._name)).unlink()
            self._sock = self._name = None
