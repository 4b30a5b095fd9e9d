"""A cross-process doorbell: writers ring it after a commit that may have made work claimable.

Each waiting store binds one Linux abstract-namespace datagram socket and lists its name as an
empty file in ``<db>.bell/``. Ringing sends one byte to every listed socket, without blocking;
a name nobody listens on any more (a crashed worker) is removed on the spot. Abstract sockets
leave nothing to clean up on disk and are free of the 108-byte socket path limit.

A ring is a hint, never a promise: waiters re-check the store, and poll slowly in any case.
Where abstract sockets do not exist (not Linux), the bell is silent and the slow poll remains.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
from pathlib import Path

import anyio

_SUPPORTED = sys.platform.startswith("linux")


class Doorbell:
    def __init__(self, db_path: Path) -> None:
        self._dir = Path(f"{db_path}.bell")
        self._sock: socket.socket | None = None
        self._name: str | None = None

    def ring(self) -> None:
        if not _SUPPORTED:
            return
        try:
            names = os.listdir(self._dir)
        except FileNotFoundError:
            return
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
