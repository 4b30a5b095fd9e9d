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

**A returning conversation's boot** (restore): a machine pinned to a conversation whose memory is
   in a snapshot. Once per run a pinned boot answers ``SEED_TURNS`` messages of the conversation
   and stops; its worker snapshots the agent when it runs out of work, and that store (database
   and snapshot archives) is the template each restoring boot starts from. Each then boots the
   entrypoint pinned to the conversation (``FACTORY_CONVERSATION``) with one ``CONTEXT?`` message
   queued: ``factory worker prepare`` restores the snapshot before the gateway starts ("restored":
   when its report line appears), then the gateway, the worker, the claim and the first turn. What
   the stub model was shown proves the restore: the earlier turns come from the restored session,
   none seeded from the stored history window.

Machine create/boot on a platform is not measurable here: the simulator's profiles
(``autoscaler.simulate``) carry the providers' numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from contracts.models import EnqueueRequest, MessagePayload, SnapshotRecord
from contracts.node import find_node
from contracts.sqlite import SqliteStore
from gateway.install import ensure_openclaw
from gateway.stub_llm import CONTEXT_PROBE, StubLLMProcess

RUNS = 3
ROOT = Path(__file__).resolve().parent.parent
BASELINE_COMMIT = "991f52f"  # the last commit with the sequential entrypoint
AFTER = ROOT / "images" / "worker" / "entrypoint.sh"
WARM = ROOT / "images" / "worker" / "warm-cache.sh"
TIMEOUT_S = 300.0
STEPS = ("gateway ready", "registered", "first claim", "reply done")
RESTORE_STEPS = ("restored", *STEPS)
MEMORY_CONVERSATION = "cold:memory"
SEED_TURNS = 12
STORE = "factory.db"
# The line `factory worker prepare` prints once the snapshot is in place (or found to be none).
_PREPARED = "prepared agent "


@dataclass
class Run:
    marks: dict[str, float] = field(default_factory=dict)
    # A restoring boot: prepare's restore status, and what the model was shown with the message.
    restore: str | None = None
    earlier_turns: int | None = None
    seeded_turns: int | None = None


async def _store_marks(db: Path, message_id: str, known: frozenset[str]) -> tuple[bool, bool, bool]:
    """(a worker registered that the store did not know before, the message claimed, the message done)."""
    store = SqliteStore(db)
    try:
        workers = await store.list_workers()
        record = await store.get_message(message_id)
        assert record is not None
        return any(w.worker_id not in known for w in workers), record.attempts > 0, record.status == "done"
    finally:
        await store.aclose()


async def _worker_ids(db: Path) -> frozenset[str]:
    store = SqliteStore(db)
    try:
        return frozenset(w.worker_id for w in await store.list_workers())
    finally:
        await store.aclose()


async def enqueue_one(db: Path, conversation: str = "cold:1", text: str = "hello, cold start") -> str:
    """Queue one message in the SQLite store at ``db``; its id."""
    store = SqliteStore(db)
    try:
        return await store.enqueue(
            EnqueueRequest(
                conversation_id=conversation,
                agent_key="default",
                payload=MessagePayload(provider="app", provider_user_id="u", message_text=text),
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


def machine_boot(
    script: Path,
    stub: StubLLMProcess,
    cache: Path | None,
    *,
    conversation: str | None = None,
    template: Path | None = None,
    text: str = "hello, cold start",
) -> Run:
    """One boot of ``script`` from zero; the moments of each step, in seconds from its start.

    ``conversation``: the machine is pinned to it (its worker prepares the agent first, restoring
    the conversation's newest snapshot) and the message is queued there. ``template``: a folder
    holding a store (``STORE`` and its snapshot archives) that the boot starts from."""
    work = Path(tempfile.mkdtemp(prefix="factory-cold-"))
    try:
        (work / "home").mkdir()
        env = _machine_env(work, stub, cache)
        db = work / STORE
        if template is not None:
            _copy_store(template, work)
        if conversation is not None:
            env["FACTORY_CONVERSATION"] = conversation
        known = anyio.run(_worker_ids, db)
        message_id = anyio.run(enqueue_one, db, conversation or "cold:1", text)
        ready_url = f"http://127.0.0.1:{env['OPENCLAW_GATEWAY_PORT']}/readyz"
        run = Run()
        boot_log = work / "boot.log"
        with boot_log.open("wb") as log:
            started = time.monotonic()
            proc = subprocess.Popen(["sh", str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                _watch(proc, run, started, ready_url, (db, message_id, known), boot_log if conversation else None)
            finally:
                _stop(proc)
        if "reply done" not in run.marks:
            # Reported, not raised: a loaded machine can keep the gateway from starting at all.
            print(f"  {script.name}: no reply within {TIMEOUT_S:g} s ({_last_line(boot_log)})")
        elif text == CONTEXT_PROBE:
            probe = _last_probe(stub.log_path)
            if probe is not None:
                run.earlier_turns, run.seeded_turns = probe
        return run
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _watch(
    proc: subprocess.Popen[bytes],
    run: Run,
    started: float,
    ready_url: str,
    message: tuple[Path, str, frozenset[str]],
    boot_log: Path | None,
) -> None:
    """Mark each step as it is first seen, until the reply is done, the machine exits or time is up.
    ``message``: the store, the message's id, the workers registered before the boot; ``boot_log``:
    where a pinned boot's prepare reports its restore."""
    db, message_id, known = message
    with httpx.Client(trust_env=False, timeout=1.0) as client:
        while "reply done" not in run.marks and time.monotonic() - started < TIMEOUT_S:
            now = time.monotonic() - started
            if boot_log is not None and run.restore is None:
                run.restore = _prepared(boot_log)
                if run.restore is not None:
                    run.marks["restored"] = now
            if "gateway ready" not in run.marks:
                try:
                    if client.get(ready_url).status_code == 200:
                        run.marks["gateway ready"] = now
                except httpx.HTTPError:
                    pass
            registered, claimed, done = anyio.run(_store_marks, db, message_id, known)
            for step, seen in (("registered", registered), ("first claim", claimed), ("reply done", done)):
                if seen:
                    run.marks.setdefault(step, now)
            if proc.poll() is not None:
                return
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as the platform stops a machine; killed if it has not exited within a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(boot_log: Path) -> str:
    """What a boot that fell short said last, for the report line."""
    tail = boot_log.read_text(errors="replace").strip().splitlines()[-1:]
    return tail[0][:160] if tail else "no output"


def _prepared(boot_log: Path) -> str | None:
    """Prepare's restore status once its report line is in the boot log: restored, none, …"""
    for line in boot_log.read_text(errors="replace").splitlines():
        if line.startswith(_PREPARED) and ": restore " in line:
            return line.rsplit(": restore ", 1)[1].strip()
    return None


def _last_probe(stub_log: Path) -> tuple[int, int] | None:
    """What the model was shown with the newest ``CONTEXT?`` message: earlier turns of the session
    itself, and turns the worker seeded from the stored history window."""
    found = None
    for line in stub_log.read_text().splitlines():
        call = json.loads(line)
        if CONTEXT_PROBE in str(call.get("user_text", "")):
            found = (int(call["earlier_user_turns"]), int(call["seeded_turns"]))
    return found


def _copy_store(source: Path, dest: Path) -> None:
    """The store file and its snapshot archives, as a machine would find them in the shared store."""
    shutil.copy2(source / STORE, dest / STORE)
    shutil.copytree(source / f"{STORE}.blobs", dest / f"{STORE}.blobs")


def seed_memory(script: Path, stub: StubLLMProcess, cache: Path | None, into: Path) -> SnapshotRecord | None:
    """A machine pinned to ``MEMORY_CONVERSATION`` answers ``SEED_TURNS`` messages and stops; the
    store it leaves (with the snapshot its worker took) is copied to ``into``. The newest ready
    snapshot, or None when the boot did not get that far."""
    work = Path(tempfile.mkdtemp(prefix="factory-seed-"))
    try:
        (work / "home").mkdir()
        env = _machine_env(work, stub, cache)
        env["FACTORY_CONVERSATION"] = MEMORY_CONVERSATION
        db = work / STORE
        ids = [
            anyio.run(enqueue_one, db, MEMORY_CONVERSATION, f"note {i} of the seed: MARK-SEED{i}")
            for i in range(SEED_TURNS)
        ]
        with (work / "boot.log").open("wb") as log:
            proc = subprocess.Popen(["sh", str(script)], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + TIMEOUT_S + 10 * SEED_TURNS
                while time.monotonic() < deadline and proc.poll() is None:
                    if anyio.run(_seeded, db, ids) is not None:
                        break
                    time.sleep(0.5)
            finally:
                _stop(proc)
        snapshot = anyio.run(_seeded, db, ids)
        if snapshot is None:
            print(f"  seeding {MEMORY_CONVERSATION}: no snapshot ({_last_line(work / 'boot.log')})")
            return None
        # A consistent copy (the WAL folded in) beside the archives it names; private, as the store is.
        os.close(os.open(into / STORE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with (
            contextlib.closing(sqlite3.connect(db)) as source,
            contextlib.closing(sqlite3.connect(into / STORE)) as copy,
        ):
            source.backup(copy)
        shutil.copytree(work / f"{STORE}.blobs", into / f"{STORE}.blobs")
        return snapshot
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _seeded(db: Path, message_ids: list[str]) -> SnapshotRecord | None:
    """The conversation's newest ready snapshot once every seed message is done and a snapshot
    was finished after the last of them."""
    store = SqliteStore(db)
    try:
        finished = []
        for message_id in message_ids:
            record = await store.get_message(message_id)
            if record is None or record.status != "done" or record.finished_at is None:
                return None
            finished.append(record.finished_at)
        ready = [
            s
            for s in await store.snapshot_list(MEMORY_CONVERSATION)
            if s.status == "ready" and s.completed_at is not None and s.completed_at >= max(finished)
        ]
        return max(ready, key=lambda s: s.created_at) if ready else None
    finally:
        await store.aclose()


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


def _report_steps(title: str, rows: dict[str, list[Run]], steps: tuple[str, ...]) -> None:
    done = {label: sum(1 for r in runs if "reply done" in r.marks) for label, runs in rows.items()}
    print(f"\n{title} (median of the boots that replied, of {RUNS} each: {done}; seconds from the start)")
    print(f"  {'':<34}" + "".join(f"{s:>15}" for s in steps))
    for label, runs in rows.items():
        print(f"  {label:<34}" + "".join(f"{_median(runs, s):>15.2f}" for s in steps))


def _report(title: str, rows: dict[str, list[Run]], steps: tuple[str, ...], baseline: str) -> None:
    _report_steps(title, rows, steps)
    after = next(k for k in rows if k != baseline)
    ratio = _median(rows[after], steps[-1]) / _median(rows[baseline], steps[-1])
    print(f"  {after} / {baseline}: {ratio:.2f}× to the reply")


def _report_restore(snapshot: SnapshotRecord, runs: list[Run], unpinned: list[Run]) -> None:
    """The restoring boots' steps, their split, and what the model was shown."""
    size_kib = (snapshot.size_bytes or 0) / 1024
    _report_steps(
        f"a returning conversation's boot: pinned, restoring a snapshot of {SEED_TURNS} turns ({size_kib:,.0f} KiB)",
        {"after, restoring": runs},
        RESTORE_STEPS,
    )
    restored, ready, claimed, done = (
        _median(runs, s) for s in ("restored", "gateway ready", "first claim", "reply done")
    )
    print(
        f"  split: prepare with the restore (before the gateway starts) {restored:.2f} s; gateway ready"
        f" +{ready - restored:.2f} s; first claim +{claimed - ready:.2f} s; first turn {done - claimed:.2f} s"
    )
    plain = _median(unpinned, "reply done")
    print(f"  to the reply: {done:.2f} s against {plain:.2f} s for an unpinned boot ({done / plain:.2f}×)")
    statuses = Counter(r.restore or "no report" for r in runs)
    seen = Counter(
        f"{r.earlier_turns} earlier turns, {r.seeded_turns} seeded from the history window"
        for r in runs
        if r.earlier_turns is not None
    )
    print(
        f"  restore: {_counted(statuses, len(runs))}; the model was shown {_counted(seen, len(runs)) or 'nothing'}"
        f" (the seed left {SEED_TURNS} turns)"
    )


def _counted(counts: Counter[str], runs: int) -> str:
    return ", ".join(f"{what} in {n} of {runs}" for what, n in counts.most_common())


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
            template = stub_dir / "template"
            template.mkdir(mode=0o700)
            snapshot = seed_memory(AFTER, stub, cache, template)
            before: list[Run] = []
            after: list[Run] = []
            restoring: list[Run] = []
            for _ in range(RUNS):
                before.append(machine_boot(baseline, stub, None))
                after.append(machine_boot(AFTER, stub, cache))
                if snapshot is not None:
                    pinned = machine_boot(
                        AFTER, stub, cache, conversation=MEMORY_CONVERSATION, template=template, text=CONTEXT_PROBE
                    )
                    restoring.append(pinned)
            _report(
                "a machine's boot: the image entrypoint as a local process",
                {"before (sequential, cold compile cache)": before, "after (together, compile cache)": after},
                STEPS,
                "before (sequential, cold compile cache)",
            )
            if snapshot is not None:
                _report_restore(snapshot, restoring, after)
    print(f"[{time.perf_counter() - started:.1f} s wall]")
