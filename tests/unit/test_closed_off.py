"""Secrets closed off below the CLI: private files, and no token over plain http to another host."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr, ValidationError

from autoscaler.providers.digitalocean import DigitalOceanConfig
from autoscaler.providers.fly import FlyConfig
from contracts.convex.store import ConvexStore
from contracts.errors import InvalidInput
from contracts.sqlite import SqliteStore
from contracts.urls import check_token_url
from factory.settings import StoreSettings, load
from gateway.process import ManagedProcess
from worker.telegram import TelegramChannel

PLAIN_REMOTE = "http://api.example.com"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_process_log_is_private(tmp_path: Path) -> None:
    output = tmp_path / "logs" / "gateway.out"
    command = [sys.executable, "-c", "print('a reply')"]
    process = ManagedProcess.spawn("echo", command, env={}, cwd=tmp_path, output=output)
    deadline = time.monotonic() + 30
    while process.exit_code() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.stop(5.0)

    assert output.read_text() == "a reply\n"
    assert (_mode(output), _mode(output.parent)) == (0o600, 0o700)


def test_the_doorbell_folders_are_private(tmp_path: Path) -> None:
    async def wait_once() -> list[tuple[int, list[int]]]:
        store = SqliteStore(tmp_path / "s" / "store.db")
        try:
            # The watch's wait lists it in both: <db>.bell/ (work) and <db>.idle/ (idle workers).
            await store.wait_for_fleet_change(0.01)
            bells = [tmp_path / "s" / f"store.db.{kind}" for kind in ("bell", "idle")]
            return [(_mode(bell), [_mode(entry) for entry in bell.iterdir()]) for bell in bells]
        finally:
            await store.aclose()

    assert anyio.run(wait_once) == [(0o700, [0o600]), (0o700, [0o600])]
    assert _mode(tmp_path / "s") == 0o700 and _mode(tmp_path / "s" / "store.db") == 0o600


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://happy-animal-123.convex.cloud", True),
        ("http://127.0.0.1:3210", True),
        ("http://localhost:8080/bot", True),
        ("http://[::1]:9", True),
        (PLAIN_REMOTE, False),
        ("http://10.0.0.5", False),
        ("ftp://example.com", False),
        ("https:/x", False),
        ("http://[::1", False),
    ],
)
def test_a_token_goes_over_https_or_to_loopback_only(url: str, allowed: bool) -> None:
    if allowed:
        assert check_token_url(url) == url
    else:
        with pytest.raises(ValueError, match=r"https://|not a URL"):
            check_token_url(url)


def test_every_client_that_sends_a_token_refuses_plain_http_elsewhere() -> None:
    with pytest.raises(InvalidInput, match="plain http"):
        ConvexStore(PLAIN_REMOTE, auth_token=SecretStr("t"))
    with pytest.raises(ValueError, match=r"api_base: .* plain http"):
        TelegramChannel(api_base=PLAIN_REMOTE)
    with pytest.raises(ValidationError, match="plain http"):
        FlyConfig(api_token=SecretStr("t"), app="a", image="i", api_base_url=PLAIN_REMOTE)
    with pytest.raises(ValidationError, match="plain http"):
        DigitalOceanConfig(token=SecretStr("t"), worker_image="i", api_base_url=PLAIN_REMOTE)
    # Without a token nothing secret travels: a store opened anonymously over http is allowed.
    anyio.run(ConvexStore(PLAIN_REMOTE).aclose)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("HTTPS://happy-animal-123.convex.site", "https://happy-animal-123.convex.cloud"),
        ("https://happy-animal-123.convex.cloud/", "https://happy-animal-123.convex.cloud"),
        (" .factory/factory.db ", ".factory/factory.db"),
        ("./ftp:notes.db", "./ftp:notes.db"),
    ],
)
def test_a_store_is_a_path_or_a_normalised_convex_url(given: str, kept: str) -> None:
    assert load(StoreSettings, store=given).store == kept


@pytest.mark.parametrize("given", ["ftp://x/y", "https:/x.convex.cloud", "file:///tmp/x.db", "sqlite:x.db", " "])
def test_any_other_store_is_refused_naming_the_setting(given: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        load(StoreSettings, store=given)
    assert refused.value.field == "FACTORY_STORE"
