"""Run ``factory`` in this process (``factory.cli.run``), as a user would call it, without a fork.

For tests that run many commands (the property test, the table of bad inputs): the environment,
working directory and stdin are the command's alone for the call, and its stdout and stderr are
captured. Nothing of ours is replaced: the real CLI runs on the real store.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import random
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from contracts.clock import ManualClock
from contracts.models import (
    AppendRequest,
    EnqueueRequest,
    FailRequest,
    HistoryMessage,
    LeaseRef,
    MessagePayload,
    WorkerRegistration,
)
from contracts.sqlite import SqliteStore
from factory.cli import run
from tests.cli.conftest import Result
from tests.contract.helpers import TEST_BOX

# Stored text that would act on a terminal: a window title, a screen clear, a CSI, markup, an emoji
# code and a right-to-left override.
ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b31m[red]x[/] :smile: \u202eevil"

# The libraries factory.logging sets levels for.
_QUIETED = ("httpx", "httpcore", "websockets")

# The settings a command reads from the environment; a test starts from none of them.
SETTING_PREFIXES = ("FACTORY_", "OPENCLAW_", "FLY_", "DIGITALOCEAN", "CONVEX_", "TELEGRAM_")


def invoke(args: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None, stdin: str = "") -> Result:
    """``factory ARGS`` in ``cwd`` with ``env`` as its only settings; the exit code and output."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith(SETTING_PREFIXES)]:
            patch.delenv(name)
        for name, value in (env or {}).items():
            patch.setenv(name, value)
        patch.chdir(cwd)
        patch.setattr(sys, "stdin", io.StringIO(stdin))
        with _logging_restored(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(list(args))
    return Result(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    """A command configures logging for its process (levels, a handler on our capture); the test
    process gets its own configuration back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in _QUIETED}
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


async def seed_store(path: Path) -> None:
    """A store with history, a dead letter, a worker and a secret, all carrying escape sequences."""
    store = SqliteStore(path, clock=ManualClock(), rng=random.Random(3), secrets_box=TEST_BOX)
    try:
        payload = MessagePayload(provider="app", provider_user_id="u", message_text=f"hello {ESCAPES}")
        await store.enqueue(EnqueueRequest(conversation_id="seed-1", agent_key="default", payload=payload))
        await store.worker_register(WorkerRegistration(worker_id="w-1", provider="local"))
        job = await store.worker_claim("w-1")
        assert job is not None
        turns = [HistoryMessage(role="user", content=ESCAPES), HistoryMessage(role="assistant", content=ESCAPES)]
        await store.worker_append_conversation_messages(
            AppendRequest(conversation_id="seed-1", messages=turns, message_id=job.message_id)
        )
        lease = LeaseRef(worker_id="w-1", message_id=job.message_id, lease_id=job.lease_id)
        await store.worker_complete(lease)
        dead = EnqueueRequest(conversation_id="seed-2", agent_key="default", payload=payload, max_attempts=1)
        await store.enqueue(dead)
        job = await store.worker_claim("w-1")
        assert job is not None
        lease = LeaseRef(worker_id="w-1", message_id=job.message_id, lease_id=job.lease_id)
        await store.worker_fail(FailRequest(lease=lease, error_message=f"boom {ESCAPES}", retryable=False))
        await store.import_secret("telegram.botToken.default", SecretStr("4242:seeded-secret"))
    finally:
        await store.aclose()
