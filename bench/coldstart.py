"""Cold start, end to end on this machine: a message enqueued with no worker running → its reply.

Each variant runs ``RUNS`` times from zero (alternating, so both see the same load); medians are
printed with the ratio against the baseline measured in the same run.

**A machine's boot** (what a Fly machine or a droplet runs once it is up): the worker image's
   entrypoint as a local process (this machine's Python and Node, the cached OpenClaw, a SQLite
   store, the offline stub model), timed from its start: gateway ready (``/readyz``), worker
   registered, first claim, reply done.
   * before: the entrypoint as it was before the cold-start work (``BASELINE_COMMIT``, read from
     git: config, then the gateway until ready, then the worker), with a cold compile cache: not
     "no cache", since without NODE_COMPILE_CACHE openclaw.mjs turns Node's compile cache on by
     itself in ``$TMPDIR/node-compile-cache``, empty on a fresh machine (and here, a fresh TMPDIR
     per boot), so every boot compiled everything and wrote ~40 MB of cache;
   * after: ``images/worker/entrypoint.sh`` (gateway and worker started together, the worker
     waiting for ``/readyz`` only before its first claim), Node's compile cache warm as the image
     build leaves it (``warm-cache.sh``).
   The current gateway config (``gateway.config``: no Control UI) applies to both: the baseline
   reuses today's ``gateway_config.py``. "gateway ready" of the two is not like for like: in
   "after" the worker's own start shares the machine's cores with the gateway's.

Where the gateway's ~15-25 s go (2 vCPUs, measured with ``OPENCLAW_GATEWAY_STARTUP_TRACE=1``, which
logs each startup phase to its console): ~20-25 CPU-seconds in the main thread, 4-7 worker threads
and 4-5 helper processes, each of which loads much of OpenClaw's module graph; the CLI bootstrap
before "loading configuration" takes 8-10 s (legacy-state migrations ~3 s even on an empty state
dir, the config validated eight times ~2 s, the plugin plan ~0.7 s), the worker-environment store
import ~3 s, the 14 bundled plugins ~0.7 s. Compiling is a small share: the warm cache is read
(``NODE_DEBUG_NATIVE=COMPILE_CACHE``: ~12,000 entries accepted across those threads and
processes) and saves ~5 CPU-seconds against a cold one being written, ~1 against none at all.
   The entrypoint is what the local provider would run for a machine of its own; local workers
   launched by ``factory reconcile --provider local`` share this machine's running gateway, so
   their cold start is the "registered → reply" part alone.

Restore is not a step here yet: this build has no snapshots (the memory issue adds them); a fresh
session's history load is inside the first turn. Machine create/boot on a platform is not
measurable here: the simulator's profiles (``autoscaler.simulate``) carry the providers' numbers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from contracts.models import EnqueueRequest, MessagePayload
from contracts.node import find_node
from contracts.sqlite import SqliteStore
from gateway.install import ensure_openclaw
from gateway.stub_llm import StubLLMProcess

RUNS = 3
ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "991f52f"  # the last commit with the sequential entrypoint
AFTER = ROOT / "images" / "worker" / "entrypoint.sh"
WARM = ROOT / "images" / "worker" / "warm-cache.sh"
TIMEOUT_S = 300.0
STEPS = ("gateway ready", "registered", "first claim", "reply done")


@dataclass
class Run:
    marks: dict[str, float] = field(default_factory=dict)


async def _store_marks(db: Path, message_id: str) -> tuple[bool, bool, bool]:
    """(a worker registered, the message claimed, the message done)."""
    store = SqliteStore(db)
    try:
        workers = await store.list_workers()
        record = await store.get_message(message_id)
        assert record is not None
        return bool(workers), record.attempts > 0, record.status == "done"
    finally:
        await store.aclose()


async def enqueue_one(db: Path, conversation: str = "cold:1") -> str:
    """Queue one message in the SQLite store at ``db``; its id."""
    store = SqliteStore(db)
    try:
        return await store.enqueue(
            EnqueueRequest(
                conversation_id=conversation,
                agent_key="default",
                payload=MessagePayload(provider="app", provider_user_id="u", message_text="hello, cold start"),
            )
        )
    finally:
        await store.aclose()


def _machine_env(work: Path, stub: StubLLMProcess, cache: Path | None) -> dict[str, str]:
    install = ensure_openclaw(os.environ)
    node = find_node()
    venv_bin = Path(sys.executable).parent
    (work / "home").mkdir(parents=True, exist_ok=True)  # HOME and TMPDIR: mktemp needs it to exist
    env = {
        "PATH": f"{node.bin_dir}:{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work / "home"),
        "TMPDIR": str(work / "home"),  # its own: OpenClaw keeps staging locks in the temporary folder
        "LANG": "C.UTF-8",
        "OPENCLAW_ENTRY": str(install.entry),
        "OPENCLAW_STATE_DIR": str(work / "openclaw"),
        "OPENCLAW_GATEWAY_PORT": str(_free_port()),
        "FACTORY_STORE": str(work / "factory.db"),
        "FACTORY_OPENCLAW_MODEL": "stub-model",
        "FACTORY_OPENCLAW_MODEL_BASE_URL": stub.base_url,
        "FACTORY_OPENCLAW_MODEL_API_KEY": "stub-local",
        "FACTORY_WORKER_ID": "cold",
        "FACTORY_POLL_S": "0.2",
        "FACTORY_LOG_LEVEL": "warning",
    }
    if cache is not None:
        env["NODE_COMPILE_CACHE"] = str(cache)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_boot(script: Path, stub: StubLLMProcess, cache: Path | None) -> Run:
    """One boot of ``script`` from zero; the moments of each step, in seconds from its start."""
    work = Path(tempfile.mkdtemp(prefix="factory-cold-"))
    try:
        (work / "home").mkdir()
        env = _machine_env(work, stub, cache)
        message_id = anyio.run(enqueue_one, work / "factory.db")
        ready_url = f"http://127.0.0.1:{env['OPENCLAW_GATEWAY_PORT']}/readyz"
        run = Run()
        with (work / "boot.log").open("wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(["sh", str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                with httpx.Client(trust_env=False, timeout=1.0) as client:
                    while "reply done" not in run.marks and time.monotonic() - started < TIMEOUT_S:
                        now = time.monotonic() - started
                        if "gateway ready" not in run.marks:
                            try:
                                if client.get(ready_url).status_code == 200:
                                    run.marks["gateway ready"] = now
                            except httpx.HTTPError:
                                pass
                        registered, claimed, done = anyio.run(_store_marks, work / "factory.db", message_id)
                        for step, seen in (("registered", registered), ("first claim", claimed), ("reply done", done)):
                            if seen:
                                run.marks.setdefault(step, now)
                        if proc.poll() is not None:
                            break
                        time.sleep(0.05)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if "reply done" not in run.marks:
            # Reported, not raised: a loaded machine can keep the gateway from starting at all.
            tail = (work / "boot.log").read_text(errors="replace").strip().splitlines()[-1:]
            print(f"  {script.name}: no reply within {TIMEOUT_S:g} s ({tail[0][:160] if tail else 'no output'})")
        return run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def warm_cache(cache: Path, stub: StubLLMProcess) -> None:
    """Fill the compile cache as the image build does (warm-cache.sh with this machine's install)."""
    work = Path(tempfile.mkdtemp(prefix="factory-warm-"))
    try:
        env = _machine_env(work, stub, cache)
        subprocess.run(["sh", str(WARM)], env=env, check=True, capture_output=True, timeout=TIMEOUT_S)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _baseline_entrypoint() -> str:
    """The entrypoint as it was (its gateway_config.py sibling is unchanged, and is found by the
    script in its own folder, so it is copied next to it by the caller's temp folder)."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:images/worker/entrypoint.sh"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the baseline entrypoint needs the git history ({BASELINE_COMMIT}): {done.stderr.strip()}")
    return done.stdout


def _median(runs: list[Run], step: str) -> float:
    seen = [r.marks[step] for r in runs if step in r.marks]
    return statistics.median(seen) if seen else float("nan")


def _report(title: str, rows: dict[str, list[Run]], steps: tuple[str, ...], baseline: str) -> None:
    done = {label: sum(1 for r in runs if "reply done" in r.marks) for label, runs in rows.items()}
    print(f"\n{title} (median of the boots that replied, of {RUNS} each: {done}; seconds from the start)")
    print(f"  {'':<34}" + "".join(f"{s:>15}" for s in steps))
    for label, runs in rows.items():
        print(f"  {label:<34}" + "".join(f"{_median(runs, s):>15.2f}" for s in steps))
    after = next(k for k in rows if k != baseline)
    ratio = _median(rows[after], steps[-1]) / _median(rows[baseline], steps[-1])
    print(f"  {after} / {baseline}: {ratio:.2f}× to the reply")


def run() -> None:
    started = time.perf_counter()
    print(f"\nCold start on this machine: enqueue → first reply from zero workers (load now: {os.getloadavg()[0]:.1f})")
    with tempfile.TemporaryDirectory() as tmp:
        stub_dir = Path(tmp)
        with StubLLMProcess.start(stub_dir / "stub.jsonl", output=stub_dir / "stub.out") as stub:
            cache = stub_dir / "compile-cache"
            warm_cache(cache, stub)
            baseline = stub_dir / "entrypoint-before.sh"
            baseline.write_text(_baseline_entrypoint())
            shutil.copy(AFTER.parent / "gateway_config.py", stub_dir / "gateway_config.py")
            before: list[Run] = []
            after: list[Run] = []
            for _ in range(RUNS):
                before.append(machine_boot(baseline, stub, None))
                after.append(machine_boot(AFTER, stub, cache))
            _report(
                "a machine's boot: the image entrypoint as a local process",
                {"before (sequential, cold compile cache)": before, "after (together, compile cache)": after},
                STEPS,
                "before (sequential, cold compile cache)",
            )
    print(f"[{time.perf_counter() - started:.1f} s wall]")
