"""Snapshot archives beside the database: one file per archive, named by its sha256.

The folder is ``<database>.blobs/`` (0700) and each file is 0600: archives hold an agent's
memory. Content-addressed, so the same archive is stored once and a name is its own checksum.
A file is written under a temporary name and renamed into place after an fsync, so a crash never
leaves a partial archive under a real name. Blocking file I/O: callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path

_NAME = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class BlobError(Exception):
    """An archive could not be stored or read (missing, wrong checksum, disk error)."""


class BlobDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _ensure(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # mkdir's mode is masked by the umask, and an existing folder keeps what it had.
        self.root.chmod(0o700)

    def path(self, sha256: str) -> Path:
        if not _NAME.fullmatch(sha256):
            raise BlobError(f"{sha256!r} is not a sha256 archive name")
        return self.root / sha256

    def put(self, source: Path) -> str:
        """Copy ``source`` in; returns its sha256, which is also its name."""
        self._ensure()
        temp = self.root / f".incoming-{secrets.token_hex(8)}"
        digest = hashlib.sha256()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            name = digest.hexdigest()
            os.replace(temp, self.root / name)
        except OSError as exc:
            raise BlobError(f"cannot store the archive in {self.root}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        return name

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def copy_to(self, sha256: str, dest: Path) -> None:
        try:
            shutil.copyfile(self.path(sha256), dest)
        except FileNotFoundError:
            raise BlobError(f"archive {sha256} is missing from {self.root}") from None
        except OSError as exc:
            raise BlobError(f"cannot read archive {sha256}: {exc.strerror or exc}") from exc

    def delete(self, sha256: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(sha256).unlink()
