"""Memory that follows a conversation: snapshot size and time, restore time, first reply on a fresh machine.

Everything runs against real OpenClaw gateways (our stub model behind them) on loopback:

1. **A 200-turn session.** Machine A (a gateway on its own state directory) answers 200 turns of
   one conversation over HTTP, then stops. Its agent state is what a pinned worker archives.
2. **Snapshot size and time**: ``gateway.snapshots.write_archive`` of that state (the allow-listed
   agent database, copied with SQLite's backup API, and the workspace), median of 5.
   BASELINE, same run: a tar.gz of the whole state directory, which is what upstream's worker
   uploads (``/data/.clawdbot`` + workspace: caches, logs and the device key included).
3. **Restore time**: ``restore_archive`` (checksum, member checks, SQLite ``quick_check``, move into
   place) into a fresh directory, median of 5. BASELINE: ``tarfile.extractall`` of the same archive
   with no checks.
4. **First reply on a fresh machine**: machine B restores the snapshot, starts its gateway and
   answers turn 201 (``CONTEXT?``); machine C starts without a snapshot and answers turn 201 with
   the stored history window seeded in front (64 entries, as the worker does). Shown: gateway start
   to ready, and the first turn itself, which is where the difference lies; and what the model
   saw (earlier user turns).
"""

from __future__ import annotations

import os
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from gateway.config import AgentSpec, CompatibleModel
from gateway.history import with_history
from gateway.install import OpenClawInstall, ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.snapshots import restore_archive, write_archive
from gateway.stub_llm import StubLLMProcess

TURNS = 200
HISTORY_WINDOW = 64  # what the hydration bundle carries (contracts.sqlite.agents.HISTORY_WINDOW)
SESSION = "agent:main:conv-bench-memory"
ROUNDS = 5


@dataclass(frozen=True)
class FirstReply:
    ready_s: float
    first_turn_s: float
    reply: str


def _median(fn: Callable[[], float], rounds: int = ROUNDS) -> float:
    return statistics.median(fn() for _ in range(rounds))


def _turn(client: httpx.Client, runtime: GatewayRuntime, text: str) -> str:
    response = client.post(
        f"{runtime.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {runtime.token.get_secret_value()}", "x-openclaw-session-key": SESSION},
        json={"model": "openclaw/main", "messages": [{"role": "user", "content": text}]},
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["message"]["content"])


def _text(n: int) -> str:
    return f"turn {n}: remember that item {n} costs {n * 7} euros and goes to shelf {n % 13}."


def _gateway(install: OpenClawInstall, state: Path, stub: StubLLMProcess) -> GatewayRuntime:
    return GatewayRuntime(
        install,
        state,
        model=CompatibleModel(base_url=stub.base_url),
        agents=(AgentSpec(id="main"),),
        ready_timeout_s=600,
    )


def _first_reply(runtime: GatewayRuntime, text: str) -> FirstReply:
    started = time.monotonic()
    runtime.start()
    ready = time.monotonic() - started
    try:
        with httpx.Client(trust_env=False, timeout=600) as client:
            started = time.monotonic()
            reply = _turn(client, runtime, text)
            return FirstReply(ready, time.monotonic() - started, reply)
    finally:
        runtime.stop()


def _whole_dir_tgz(state: Path, dest: Path) -> None:
    with tarfile.open(dest, "w:gz", compresslevel=6) as tar:
        tar.add(state, arcname=".")


def run() -> None:
    print(f"\nMemory: a {TURNS}-turn session snapshotted, restored, and answered on a fresh machine", flush=True)
    # The gateway helpers log at info; only warnings reach the terminal.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger("warning"))
    try:
        _run()
    finally:
        structlog.reset_defaults()


def _run() -> None:
    install = ensure_openclaw(os.environ)
    with tempfile.TemporaryDirectory(prefix="factory-bench-memory-", ignore_cleanup_errors=True) as tmp:
        root = Path(tmp)
        with StubLLMProcess.start(root / "stub.jsonl", output=root / "stub.out") as stub:
            a = _gateway(install, root / "A", stub)
            a.start()
            history: list[tuple[str, str]] = []
            try:
                started = time.monotonic()
                with httpx.Client(trust_env=False, timeout=600) as client:
                    for n in range(1, TURNS + 1):
                        reply = _turn(client, a, _text(n))
                        history += [("user", _text(n)), ("assistant", reply)]
                fill_s = time.monotonic() - started
            finally:
                a.stop()
            print(f"  {TURNS} turns on machine A in {fill_s:.0f} s", flush=True)

            archive = root / "snap.tgz"
            info = write_archive(root / "A", ["main"], archive)
            snap_s = _median(lambda: _timed(lambda: write_archive(root / "A", ["main"], root / "again.tgz")))
            whole = root / "whole.tgz"
            whole_s = _median(lambda: _timed(lambda: _whole_dir_tgz(root / "A", whole)))
            whole_bytes = whole.stat().st_size

            def restore_once() -> float:
                target = Path(tempfile.mkdtemp(dir=root))
                return _timed(lambda: restore_archive(archive, target, sha256=info.sha256, size_bytes=info.size_bytes))

            def plain_extract() -> float:
                target = Path(tempfile.mkdtemp(dir=root))
                with tarfile.open(archive) as tar:
                    return _timed(lambda: tar.extractall(target, filter="data"))

            restore_s, extract_s = _median(restore_once), _median(plain_extract)

            b_state = root / "B"
            restore_archive(archive, b_state, sha256=info.sha256, size_bytes=info.size_bytes)
            with_restore = _first_reply(_gateway(install, b_state, stub), "CONTEXT? turn 201")
            seeded = with_history(history[-HISTORY_WINDOW:], "CONTEXT? turn 201")
            without = _first_reply(_gateway(install, root / "C", stub), seeded)

    print(f"  snapshot: {_mib(info.size_bytes)} (tar.gz of {info.files} files, {_mib(info.total_bytes)} uncompressed)")
    print(f"            in {snap_s * 1000:.0f} ms (median of {ROUNDS})")
    print(
        f"            baseline, the whole state dir as upstream uploads it: {_mib(whole_bytes)}"
        f" in {whole_s * 1000:.0f} ms → ours is {info.size_bytes / whole_bytes:.0%} of the size,"
        f" {snap_s / whole_s:.0%} of the time"
    )
    print(f"  restore:  {restore_s * 1000:.0f} ms (checksum, member checks, quick_check, move into place)")
    print(
        f"            baseline, tarfile extractall without checks: {extract_s * 1000:.0f} ms"
        f" ({restore_s / extract_s:.1f}×)"
    )
    print("  first reply on a fresh machine (turn 201):")
    for label, result in (("with restore", with_restore), ("seeded history", without)):
        print(
            f"    {label:<15} gateway ready {result.ready_s:5.1f} s, first turn {result.first_turn_s:5.2f} s"
            f" — {result.reply}"
        )


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"
