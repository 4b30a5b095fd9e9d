"""Build real workers for tests: the real store, the real OpenClaw client, the real channels."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import anyio

from contracts.models import EnqueueRequest, MessagePayload
from contracts.roles import WorkerStore
from tests.gateway_fixture import OpenClawGateway
from worker.config import WorkerConfig
from worker.delivery import Delivery, SessionProbe
from worker.health import Readiness
from worker.job import JobRunner
from worker.loop import Worker
from worker.memory import AgentMemory
from worker.metrics import WorkerMetrics
from worker.openclaw.sessions import session_key
from worker.outage import OutagePolicy
from worker.telegram import TelegramChannel


def message(conversation: str, text: str, *, provider: str = "app", user: str = "u-1", **kw: object) -> EnqueueRequest:
    return EnqueueRequest.model_validate(
        {
            "conversation_id": conversation,
            "agent_key": "default",
            "payload": MessagePayload(provider=provider, provider_user_id=user, message_text=text),
            **kw,
        }
    )


def build_worker(
    store: WorkerStore,
    delivery: Delivery,
    *,
    worker_id: str = "w1",
    telegram: TelegramChannel | None = None,
    memory: AgentMemory | None = None,
    seed: bool = False,
    bridge_dir: Path | None = None,
    outage_policy: OutagePolicy | None = None,
    **config: object,
) -> tuple[Worker, WorkerMetrics]:
    """A worker as ``factory worker run`` wires it; ``seed`` lets it seed new sessions from history,
    ``memory`` makes a pinned one snapshot its agent when it stops."""
    metrics = memory.metrics if memory is not None and memory.metrics is not None else WorkerMetrics()
    readiness = Readiness()
    runner = JobRunner(
        delivery=delivery,
        channels={"telegram": telegram} if telegram is not None else {},
        session_key=session_key,
        metrics=metrics,
        # The real deliveries (WS, HTTP) are session probes too.
        sessions=cast("SessionProbe", delivery) if seed else None,
        bridge_dir=bridge_dir,
    )
    cfg = WorkerConfig.model_validate({"worker_id": worker_id, "poll_s": 0.2, **config})
    # Outages are probed often in tests: an outage they end is noticed within a few tenths of a second.
    policy = outage_policy or OutagePolicy(initial_s=0.05, max_s=0.2, jitter_s=0.05)
    return Worker(cfg, store, runner, metrics, readiness, memory, outage_policy=policy), metrics


async def eventually(check: Callable[[], Awaitable[bool]], *, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = anyio.current_time() + timeout_s
    while not await check():
        if anyio.current_time() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        await anyio.sleep(0.05)


def worker_env(gateway: OpenClawGateway, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "OPENCLAW_"))}
    env.update(
        OPENCLAW_GATEWAY_URL=gateway.url,
        OPENCLAW_GATEWAY_TOKEN=gateway.token.get_secret_value(),
        FACTORY_POLL_S="0.2",
    )
    env.update(extra)
    return env


def start_worker_process(
    store: Path | str, env: dict[str, str], *args: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``factory worker run`` as its own process, as an operator would start it (``store``: a
    SQLite path or a Convex URL)."""
    command = [sys.executable, "-m", "factory", "worker", "run", "--store", str(store), *args]
    if log is None:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(log, "ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=env, stdout=out, stderr=out)
