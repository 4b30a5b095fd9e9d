"""``factory serve`` for tests: the real app on a real uvicorn server on loopback, one per module.

The server runs on its own thread and event loop with its own store on a SQLite file; tests open
their own store on the same file (as another process would), and a loopback fake of the Bot API
sends webhook updates to the server over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from contracts.sqlite import SqliteStore
from ingress import IngressConfig, IngressServer, create_app
from ingress.configure import configure_webhook
from tests.contract.helpers import TEST_BOX
from tests.fakes.telegram_api import TelegramApiFake, run_telegram_fake


@dataclass
class Served:
    url: str
    db: Path


class ThreadedServer:
    """An IngressServer on a thread of its own; ``stop`` shuts it down gracefully and joins."""

    def __init__(self, db: Path, config: IngressConfig, *, busy_timeout_s: float = 30.0) -> None:
        app = create_app(lambda: SqliteStore(db, secrets_box=TEST_BOX, busy_timeout_s=busy_timeout_s), config)
        self.server = IngressServer(app, port=0, grace_s=2)
        self._ready = threading.Event()
        self._url = ""
        self._thread = threading.Thread(target=anyio.run, args=(self._main,), name="factory-serve", daemon=True)

    async def _main(self) -> None:
        async with anyio.create_task_group() as tg:
            self._url = await tg.start(self.server.serve)
            self._ready.set()

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("factory serve did not start within 30 s")
        return self._url

    def stop(self) -> None:
        self.server.stop()
        self._thread.join(15)


def serve_on(db: Path, config: IngressConfig, *, busy_timeout_s: float = 30.0) -> Iterator[Served]:
    SqliteStore(db, secrets_box=TEST_BOX)  # created and migrated before the server opens it
    server = ThreadedServer(db, config, busy_timeout_s=busy_timeout_s)
    url = server.start()
    try:
        yield Served(url, db)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_on(tmp_path_factory.mktemp("serve") / "front.db", IngressConfig(webhook_cache_s=0))


@pytest.fixture
async def store(served: Served) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(served.db, secrets_box=TEST_BOX)
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
async def telegram() -> AsyncIterator[TelegramApiFake]:
    async with run_telegram_fake(tokens=[BOT_TOKEN, OTHER_TOKEN]) as fake:
        yield fake


BOT_TOKEN = "7001:bot-token-for-tests"
OTHER_TOKEN = "7002:another-bot-token"


async def connect_bot(store: SqliteStore, telegram: TelegramApiFake, served: Served, agent: str, token: str) -> None:
    """What an operator does: store the bot token, then `factory telegram configure`."""
    await store.import_secret(f"telegram.botToken.{agent}", SecretStr(token))
    report = await configure_webhook(store, agent, served.url, api_base=telegram.url)
    assert report.is_ready, report
