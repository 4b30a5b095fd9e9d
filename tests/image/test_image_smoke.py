"""The built worker image, booted for real: its root filesystem's entrypoint, run by buildah
(chroot isolation, the host's loopback), against a SQLite store and the offline stub model.

Not in ``make test``: building the image takes minutes. ``make image`` then ``make image-smoke``.
It checks what a machine does: the gateway gets ready, the worker registers and processes one
message, and SIGTERM drains it to a clean exit 0. It prints boot-to-first-claim.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import anyio
import pytest

from bench.coldstart import enqueue_one
from contracts.sqlite import SqliteStore
from gateway.stub_llm import StubLLMProcess

pytestmark = pytest.mark.image
IMAGE = os.environ.get("FACTORY_IMAGE", "localhost/factory-worker:latest")
BUILDAH = ("buildah", "--storage-driver", "vfs")
BOOT_TIMEOUT_S = 420.0  # a loaded 2-core machine has taken minutes to start the gateway


def _buildah(*args: str) -> str:
    return subprocess.run([*BUILDAH, *args], check=True, capture_output=True, text=True).stdout.strip()


async def _status(db: Path, message_id: str) -> tuple[str, int]:
    store = SqliteStore(db)
    try:
        record = await store.get_message(message_id)
        assert record is not None
        return record.status, record.attempts
    finally:
        await store.aclose()


def test_the_image_boots_processes_a_message_and_drains_on_sigterm(tmp_path: Path) -> None:
    if shutil.which("buildah") is None:
        pytest.fail("buildah is not installed: apt-get install -y buildah, then make image")
    data = tmp_path / "store"
    data.mkdir()
    db = data / "factory.db"
    message_id = anyio.run(enqueue_one, db, "smoke:1")
    # The image runs as uid 10001: the store's folder and files must be writable by it.
    for path in (data, *data.iterdir()):
        path.chmod(0o777 if path.is_dir() else 0o666)
    log_path = tmp_path / "container.log"
    with StubLLMProcess.start(tmp_path / "stub.jsonl", output=tmp_path / "stub.out") as stub:
        container = _buildah("from", IMAGE)
        try:
            with log_path.open("wb") as log:
                started = time.monotonic()
                run = subprocess.Popen(
                    [
                        *BUILDAH,
                        "run",
                        "--isolation",
                        "chroot",
                        "--network",
                        "host",
                        "-v",
                        f"{data}:/data/store",
                        "--env",
                        "FACTORY_STORE=/data/store/factory.db",
                        "--env",
                        "FACTORY_OPENCLAW_MODEL=stub-model",
                        "--env",
                        f"FACTORY_OPENCLAW_MODEL_BASE_URL={stub.base_url}",
                        "--env",
                        "FACTORY_WORKER_ID=smoke",
                        "--env",
                        "FACTORY_POLL_S=0.2",
                        "--env",
                        f"FACTORY_GATEWAY_READY_TIMEOUT_S={int(BOOT_TIMEOUT_S)}",
                        container,
                        "/usr/local/lib/factory/entrypoint.sh",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                first_claim = done = None
                while time.monotonic() - started < BOOT_TIMEOUT_S and run.poll() is None:
                    status, attempts = anyio.run(_status, db, message_id)
                    if attempts and first_claim is None:
                        first_claim = time.monotonic() - started
                    if status == "done":
                        done = time.monotonic() - started
                        break
                    time.sleep(0.25)
                assert done is not None, f"the message was not processed: {log_path.read_text()[-3000:]}"
                print(f"\nimage {IMAGE}: boot to first claim {first_claim:.1f} s, to done {done:.1f} s")
                run.send_signal(signal.SIGTERM)
                code = run.wait(timeout=120)
            output = log_path.read_text()
            assert code == 0, output[-3000:]
            assert "worker exited with status 0" in output
            assert anyio.run(_status, db, message_id) == ("done", 1)  # one attempt: nothing was spent on the boot
        finally:
            subprocess.run([*BUILDAH, "rm", container], check=False, capture_output=True)
