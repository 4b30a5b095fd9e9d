"""The console in a real browser: a seeded SQLite store, a real ``factory serve`` child process on
loopback, and Debian's chromium driven by Playwright (never a downloaded browser).

Shared by the browser tests (``tests/console``) and ``make screenshots``
(``python -m tests.console.screenshots``), so both look at the same console the same way.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import httpx
from playwright.sync_api import Browser, Playwright
from pydantic import SecretStr

from contracts.ingress import PairingCodeRequest
from contracts.models import (
    AppendRequest,
    EnqueueRequest,
    FailRequest,
    HistoryMessage,
    LeaseRef,
    MachineRef,
    MessagePayload,
    WorkerRegistration,
)
from contracts.push import PushJob, PushTemplate, Schedule
from contracts.secrets import SecretBox, SecretsKey, new_key
from contracts.sqlite import SqliteStore
from factory.cmd_console import mint
from schedules.dispatcher import first_run_at

CHROMIUM = Path("/usr/bin/chromium")
# What works here: as root, without a GPU, without a network beyond loopback.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Stored text that must render inert: HTML, rich markup, a colour escape, a title-setting OSC,
# a bidirectional override.
EVIL = "<script>window.__pwned = 1</script> [red]alarm[/red] \x1b[31mred\x1b[0m \x1b]0;owned\x07 \u202egnp.exe"
SECRET_VALUE = "4242:the-bot-token-nobody-may-see"
T = TypeVar("T")
A = TypeVarTuple("A")
START_S = 60.0  # factory serve's start, on a loaded 2-core machine


def blocking(func: Callable[[Unpack[A]], Awaitable[T]], *args: *A) -> T:
    """Run async store work to its end from synchronous code. On a thread of its own: Playwright's
    sync API keeps an event loop running on this one."""
    with ThreadPoolExecutor(1, thread_name_prefix="store") as pool:
        return pool.submit(lambda: anyio.run(func, *args)).result()


def ensure_chromium() -> Path:
    """Debian's chromium, installed with apt when missing (CI runs as root on a fresh machine)."""
    if CHROMIUM.exists():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if apt is None:
        raise RuntimeError(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run([apt, "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if not CHROMIUM.exists():
        raise RuntimeError(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(ensure_chromium()), args=CHROMIUM_ARGS, headless=True)


@dataclass(frozen=True)
class Seeded:
    """What the seed put in the store, for the tests to find."""

    admin_token: str
    reader_token: str
    evil_conversation: str
    dead_letters: tuple[str, ...]
    workers: tuple[str, ...]


def _request(conversation: str, text: str, user: str, *, priority: int = 50, max_attempts: int = 3) -> EnqueueRequest:
    provider = conversation.split(":")[0]
    payload = MessagePayload(provider=provider, provider_user_id=user, message_text=text)
    return EnqueueRequest(
        conversation_id=conversation, agent_key="default", payload=payload, priority=priority, max_attempts=max_attempts
    )


async def answer(store: SqliteStore, worker: str, conversation: str, reply: str) -> str:
    """What a worker does with a conversation's head: claim it, append the turns, complete it.
    Returns the message id."""
    job = await store.worker_claim(worker, conversation)
    if job is None:
        raise RuntimeError(f"{conversation} has nothing claimable")
    now = await store.now_ms()
    turns = [
        HistoryMessage(role="user", content=job.payload.message_text, at=now),
        HistoryMessage(role="assistant", content=reply, at=now),
    ]
    await store.worker_append_conversation_messages(
        AppendRequest(conversation_id=conversation, messages=turns, message_id=job.message_id)
    )
    lease = LeaseRef(worker_id=worker, message_id=job.message_id, lease_id=job.lease_id)
    if not (await store.worker_complete(lease)).ok:
        raise RuntimeError(f"{job.message_id} could not be completed")
    return job.message_id


async def seed(db: Path, box: SecretBox) -> Seeded:
    """A small fleet at work: answered conversations, dead letters, ready and in-flight work, two
    workers, a secret, a second agent, a pairing code, a daily push job, and an admin and a
    read-only operator."""
    store = SqliteStore(db, secrets_box=box)
    try:
        default = await store.get_agent_profile("default")
        assert default is not None
        await store.upsert_agent_profile(default.model_copy(update={"agent_key": "support", "secrets_ref": ["bot"]}))
        await store.import_secret("bot", SecretStr(SECRET_VALUE))
        await store.create_pairing_code(PairingCodeRequest(code="PAIR-7Q2X", agent_key="support", ttl_ms=900_000))
        workers = ("w-alpha", "w-beta")
        for n, worker in enumerate(workers):
            machine = MachineRef(machine_id=f"m-{n + 1:03d}", app_name="factory-workers", region="ams")
            await store.worker_register(
                WorkerRegistration(worker_id=worker, provider="local", machine_ref=machine, launch_id=f"launch-{n + 1}")
            )
        for n in range(6):
            conversation = f"telegram:{1001 + n}"
            await store.enqueue(_request(conversation, f"what's the weather in city #{n}?", f"u{n}"))
            await answer(store, "w-alpha", conversation, f"Sunny in city #{n}, 21 °C.")
        evil = "app:evil-1"
        await store.enqueue(_request(evil, EVIL, "mallory"))
        await answer(store, "w-alpha", evil, f"You said: {EVIL}")
        await store.enqueue(_request(evil, EVIL, "mallory", max_attempts=1))
        dead: list[str] = []
        for conversation, error in (("telegram:2001", "model refused: <b>quota</b> exceeded"), (evil, EVIL)):
            if conversation != evil:
                await store.enqueue(_request(conversation, "please summarise my inbox", "u20", max_attempts=1))
            job = await store.worker_claim("w-beta", conversation)
            assert job is not None
            lease = LeaseRef(worker_id="w-beta", message_id=job.message_id, lease_id=job.lease_id)
            await store.worker_fail(FailRequest(lease=lease, error_message=error, retryable=False))
            dead.append(job.message_id)
        await store.enqueue(_request("telegram:4001", "draft a reply to Ana", "u40"))
        assert await store.worker_claim("w-beta", "telegram:4001") is not None  # in flight
        for n in range(3):
            await store.enqueue(_request(f"telegram:{3001 + n}", f"remind me at {9 + n}:00", f"u3{n}"))
        await store.push_template_put(
            PushTemplate(
                template_id="morning", agent_key="support", title="Morning brief", text="Good morning, {name}!"
            )
        )
        daily = Schedule(kind="daily", at="08:30", tz="Europe/Amsterdam")
        await store.push_job_put(
            PushJob(
                job_id="brief-1001",
                template_id="morning",
                schedule=daily,
                conversation_id="telegram:1001",
                variables={"name": "Ana"},
                next_run_at=first_run_at(daily, await store.now_ms()),
            )
        )
        admin, _ = await mint(store, "alice", "admin")
        reader, _ = await mint(store, "bob", "read_only")
        return Seeded(admin, reader, evil, tuple(dead), workers)
    finally:
        await store.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    db: Path
    env: dict[str, str]

    def use(self, action: Callable[[SqliteStore], Awaitable[T]]) -> T:
        """``action`` on the store, opened as another process would open it."""

        async def run() -> T:
            store = SqliteStore(self.db)
            try:
                return await action(store)
            finally:
                await store.aclose()

        return blocking(run)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A ``factory`` command against the same store, as an operator would run it."""
        return subprocess.run(
            [sys.executable, "-m", "factory", *args, "--store", str(self.db)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@contextmanager
def serve(
    folder: Path, *, refresh_s: float = 0.5, settings: dict[str, str] | None = None
) -> Iterator[tuple[Served, Seeded]]:
    """A seeded SQLite store in ``folder`` and ``factory serve`` on it, as a child process on a
    loopback port (live parts refreshing every ``refresh_s``; ``settings``: more FACTORY_* variables)."""
    db = folder / "factory.db"
    key = new_key()
    seeded = blocking(seed, db, SecretBox(SecretsKey.parse(key)))
    env = {
        **os.environ,
        "FACTORY_SECRETS_KEY": key,
        "FACTORY_CONSOLE_REFRESH_S": str(refresh_s),
        "FACTORY_SERVE_PUSH_DISPATCH_S": "0",
        "FACTORY_LOG_LEVEL": "warning",
        **(settings or {}),
    }
    port = _free_port()
    log = (folder / "serve.log").open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "factory", "serve", "--host", "127.0.0.1", "--port", str(port), "--store", str(db)],
        env=env,
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, child, folder / "serve.log")
        yield Served(url, db, env), seeded
    finally:
        child.terminate()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        log.close()


def _wait_healthy(url: str, child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"factory serve exited ({child.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"factory serve did not answer /healthz within {START_S:g} s: {log.read_text()[-2000:]}")
