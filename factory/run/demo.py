"""The demo's folder, one run at a time and emptied at every start, and the pace its parts share."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.to_thread

from autoscaler.providers.local import LocalConfig, LocalProvider
from contracts.errors import FactoryError

DEMO_DIR = Path(".factory/run")
DEMO_STORE = DEMO_DIR / "factory.db"

TICK_S = 2.0  # the autoscaler's reconcile interval
OBSERVE_S = 0.5  # how often the store and the provider are read for the view
SCALE_DOWN_WINDOW_S = 6.0  # a demo-sized stabilisation window (the local provider's default: 30 s)
WORKER_STOP_TIMEOUT_S = 15.0  # destroy: SIGTERM, then SIGKILL after this long


@contextmanager
def exclusive(demo: Path) -> Iterator[None]:
    """One ``factory run`` per demo folder: a second one fails at once instead of resetting ours.

    The folder is ours alone (0700): the store, the gateway's state and the logs hold conversations."""
    demo.mkdir(mode=0o700, parents=True, exist_ok=True)
    demo.chmod(0o700)  # a folder an older release made 0755
    with (demo / ".lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FactoryError(f"another `factory run` is using {demo}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


async def reset_demo(demo: Path, *, reset_store: bool) -> int:
    """Stop workers an earlier (killed) run left behind, then clear its files; returns how many."""
    leftovers = LocalProvider(LocalConfig(state_dir=demo / "local", stop_timeout_s=WORKER_STOP_TIMEOUT_S))
    try:
        stopped = await leftovers.destroy_all()
    finally:
        await leftovers.aclose()

    def clear() -> None:
        for sub in ("local", "gateway", "machine-b"):
            shutil.rmtree(demo / sub, ignore_errors=True)
        names = ["stub-llm.jsonl", "stub-llm.out"]
        if reset_store:
            names += [DEMO_STORE.name + suffix for suffix in ("", "-wal", "-shm")]
        for name in names:
            (demo / name).unlink(missing_ok=True)

    await anyio.to_thread.run_sync(clear)
    return stopped
