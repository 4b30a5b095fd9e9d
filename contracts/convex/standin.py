"""Node tooling for the Convex module: install its packages, run its vitest suite, run the stand-in.

The module's npm packages are installed with ``npm ci`` from the committed ``package-lock.json``
into a cache folder outside the repository, keyed by a hash of the lock file::

    ${XDG_CACHE_HOME:-~/.cache}/factory/convex-module-<hash>/node_modules

and ``contracts/convex/module/node_modules`` is a (git-ignored) symlink to it, so Node's module
resolution and the Convex CLI work from the module folder as usual. Concurrent installs are
serialised by a file lock; an install is published by an atomic rename, so a crashed install
never leaves a half-filled cache behind. Node 24, the cache folder and the lock come from
:mod:`contracts.node` (a missing Node raises its ``NodeMissing``). Every entry point takes the
caller's environment (``env``): what npm and the stand-in run with, and where the cache is.

The stand-in (``module/standin/server.ts``) runs the module's real functions under convex-test
and speaks Convex's HTTP API on loopback, with test-only endpoints to reset state, move the
module's clock and inject 429/503 answers. Operators can run it by hand::

    python -m contracts.convex.standin            # install if needed, serve, print the URL
    python -m contracts.convex.standin --vitest   # run the module's vitest suite
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from contracts.node import NodeRuntime, cache_root, file_lock, find_node

MODULE_DIR = Path(__file__).resolve().with_name("module")
INSTALL_TIMEOUT_S = 900.0
START_TIMEOUT_S = 60.0
_STAMP = ".factory-install-complete"


class ToolingError(RuntimeError):
    """npm or the stand-in could not be set up; the message says what to do."""


def lock_digest(module_dir: Path = MODULE_DIR) -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((module_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def install(env: Mapping[str, str], node: NodeRuntime | None = None, *, module_dir: Path = MODULE_DIR) -> Path:
    """Make sure the module's packages are installed; returns the cached ``node_modules``.

    A real ``node_modules`` directory in the module folder (an operator ran ``npm ci`` there)
    is left alone and used as it is.
    """
    node = node or find_node()
    link = module_dir / "node_modules"
    if link.is_dir() and not link.is_symlink():
        return link
    target = cache_root(env) / f"convex-module-{lock_digest(module_dir)}"
    modules = target / "node_modules"
    with file_lock(target.with_name(target.name + ".lock")):
        if not (modules / _STAMP).exists():
            _npm_ci(env, node, module_dir, target)
    _point(link, modules)
    return modules


def _npm_ci(env: Mapping[str, str], node: NodeRuntime, module_dir: Path, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy2(module_dir / name, staging / name)
        cmd = node.npm("ci", "--ignore-scripts", "--no-audit", "--no-fund")
        try:
            done = subprocess.run(
                cmd,
                cwd=staging,
                env=node.env(env),
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ToolingError(f"npm ci for the Convex module took over {INSTALL_TIMEOUT_S:.0f}s") from exc
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-20:])
            raise ToolingError(f"npm ci for the Convex module failed (exit {done.returncode}):\n{tail}")
        (staging / "node_modules" / _STAMP).write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _point(link: Path, modules: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == modules:
        return
    temp = link.with_name(f".node_modules.{os.getpid()}.link")
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    temp.symlink_to(modules, target_is_directory=True)
    os.replace(temp, link)


# --------------------------------------------------------------------------- vitest


def run_vitest(
    env: Mapping[str, str],
    node: NodeRuntime | None = None,
    *,
    module_dir: Path = MODULE_DIR,
    timeout_s: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    """Run the module's vitest suite once; the caller checks ``returncode`` and shows the output."""
    node = node or find_node()
    install(env, node, module_dir=module_dir)
    vitest = module_dir / "node_modules" / "vitest" / "vitest.mjs"
    return subprocess.run(
        [str(node.node), str(vitest), "run"],
        cwd=module_dir,
        env=node.env(env, {"CI": "1"}),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


# --------------------------------------------------------------------------- the stand-in


class StandIn:
    """A running stand-in process: its URL and its test-only controls (reset, clock, faults)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        self.process = process
        self.url = url
        self.log_path = log_path
        self._http = httpx.Client(base_url=url, timeout=30.0)

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        node: NodeRuntime | None = None,
        *,
        port: int = 0,
        module_dir: Path = MODULE_DIR,
        extra_env: Mapping[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
    ) -> StandIn:
        """Install if needed, start the stand-in on loopback with ``env`` plus ``extra_env``, wait for it."""
        node = node or find_node()
        install(env, node, module_dir=module_dir)
        workdir = Path(tempfile.mkdtemp(prefix="factory-standin-"))
        ready, log_path = workdir / "ready.json", workdir / "standin.log"
        cmd = [str(node.node), "--import", "tsx", "standin/server.ts", "--port", str(port), "--ready-file", str(ready)]
        cmd.append("--exit-with-stdin")  # if this process dies, the pipe closes and the stand-in ends too
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                cmd,
                cwd=module_dir,
                env=node.env(env, extra_env),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends tsx's esbuild helper too
            )
        deadline = time.monotonic() + timeout_s
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                _end(process)
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
                shutil.rmtree(workdir, ignore_errors=True)
                raise ToolingError(f"the Convex stand-in did not start (exit {process.returncode}):\n{tail}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        return cls(process, str(info["url"]), log_path)

    # ---- controls (test-only endpoints of the stand-in)

    def reset(self, *, env: Mapping[str, str] | None = None, frozen_at_ms: int | None = None) -> None:
        """Fresh module state; ``frozen_at_ms`` stops the module's clock at that instant."""
        body: dict[str, Any] = {"env": dict(env or {})}
        if frozen_at_ms is not None:
            body["frozenAtMs"] = frozen_at_ms
        self._control("/_standin/reset", body)

    def advance(self, ms: int) -> int:
        """Move the module's clock forward; returns the module's new ``Date.now()``."""
        return int(self._control("/_standin/clock", {"advanceMs": ms})["now"])

    def now_ms(self) -> int:
        return int(self._http.get("/_standin/clock").json()["now"])

    def calls(self) -> dict[str, int]:
        """Function executions since the last reset: query, mutation, action, subscription."""
        return {k: int(v) for k, v in self._http.get("/_standin/calls").json().items()}

    def fail_next(self, count: int, status: int = 503, *, after_run: bool = False) -> None:
        """Answer the next ``count`` API calls with ``status`` and Convex's error body, without running
        them; with ``after_run``, run them and then drop the connection (a reply lost after commit)."""
        self._control("/_standin/faults", {"count": count, "status": status, "afterRun": after_run})

    def _control(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        reply = self._http.post(path, json=body)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def stop(self) -> None:
        self._http.close()
        _end(self.process)
        shutil.rmtree(self.log_path.parent, ignore_errors=True)

    def __enter__(self) -> StandIn:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _end(process: subprocess.Popen[bytes]) -> None:
    """End the stand-in's process group (it was started in its own session), politely first."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.convex.standin", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=3210, help="loopback port to serve on (0: any free port)")
    parser.add_argument("--install-only", action="store_true", help="install the npm packages and exit")
    parser.add_argument("--vitest", action="store_true", help="run the module's vitest suite and exit")
    args = parser.parse_args(argv)
    env, node = os.environ, find_node()
    if args.install_only:
        print(install(env, node))
        return 0
    if args.vitest:
        done = run_vitest(env, node)
        sys.stdout.write(done.stdout + done.stderr)
        return done.returncode
    # A local stand-in on loopback: anonymous callers are fine unless FACTORY_AUTH says otherwise.
    auth = {"FACTORY_AUTH": env.get("FACTORY_AUTH", "open")}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stand-in on the way out
    with StandIn.start(env, node, port=args.port, extra_env=auth) as standin:
        print(f"Convex stand-in serving the module at {standin.url} (pid {standin.pid}); Ctrl-C stops it")
        print(f"FACTORY_AUTH={auth['FACTORY_AUTH']}; state lives in memory and ends with the process")
        print(f"log: {standin.log_path}")
        with contextlib.suppress(KeyboardInterrupt):
            standin.process.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
