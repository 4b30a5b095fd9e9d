"""OpenClaw for the demo: installed once per machine, then the gateway (and the offline stub) started.

Whatever starts is registered on the caller's exit stack right away, so it is stopped however the
run ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx

from contracts.errors import FactoryError
from factory.run.model import ModelPlan
from factory.run.screen import Screen
from factory.run.state import Outcome
from gateway.config import CompatibleModel, ModelChoice
from gateway.errors import GatewayError
from gateway.install import OPENCLAW_VERSION, OpenClawInstall, default_cache_dir, ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.stub_llm import StubLLMProcess

AGENT = "main"
WARM_UP_TIMEOUT_S = 120.0
# A shared 2-core machine under load can take minutes to start a gateway (two in this demo).
READY_TIMEOUT_S = 180.0


async def _stop_blocking(outcome: Outcome, what: str, call: Callable[[], object]) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(call)
        outcome.stopped.append(what)


async def stop_gateway(outcome: Outcome, runtime: GatewayRuntime, what: str = "gateway") -> None:
    await runtime.astop()  # shielded inside; idempotent (a failed start has stopped it already)
    outcome.stopped.append(what)


async def install_openclaw(
    screen: Screen, env: Mapping[str, str], outcome: Outcome, budget_s: float
) -> OpenClawInstall:
    cache = default_cache_dir(env)
    cached = (cache / "node_modules" / "openclaw" / "openclaw.mjs").is_file()
    started = time.monotonic()
    text = f"checking OpenClaw {OPENCLAW_VERSION} in {cache}"
    if not cached:
        text = f"installing OpenClaw {OPENCLAW_VERSION} into {cache} (first run only, about a minute)…"
    with screen.step(text):
        try:
            install = await anyio.to_thread.run_sync(partial(ensure_openclaw, env, timeout_s=max(60.0, budget_s)))
        except GatewayError as exc:
            raise FactoryError(f"{_first_line(exc)} (npm log: {cache / 'npm-install.log'})") from None
    took = time.monotonic() - started
    outcome.openclaw_cached = cached and took < 5
    how = "reused the cached install" if outcome.openclaw_cached else f"installed in {took:.0f} s"
    screen.line(f"OpenClaw {OPENCLAW_VERSION}: {how} ({install.root})")
    return install


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    return lines[0].removesuffix("; last output:").rstrip(":")


async def start_gateway(
    screen: Screen, stack: AsyncExitStack, install: OpenClawInstall, demo: Path, plan: ModelPlan, outcome: Outcome
) -> GatewayRuntime:
    model: ModelChoice
    if plan.hosted is None:
        stub = await StubLLMProcess.astart((demo / "stub-llm.jsonl").absolute(), output=demo / "stub-llm.out")
        stack.push_async_callback(_stop_blocking, outcome, "stub model", stub.stop)
        await anyio.lowlevel.checkpoint()
        model = CompatibleModel(base_url=stub.base_url)
    else:
        model = plan.hosted
    runtime = GatewayRuntime(install, demo / "gateway", model=model, agents=(AGENT,), ready_timeout_s=READY_TIMEOUT_S)
    stack.push_async_callback(stop_gateway, outcome, runtime)
    started = time.monotonic()
    try:
        with screen.step("starting the OpenClaw gateway (10–20 s on 2 cores)…"):
            await runtime.astart()
        ready = time.monotonic() - started
        with screen.step(f"warming up agent {AGENT!r} (one model call)…"):
            await runtime.awarm_up(timeout_s=WARM_UP_TIMEOUT_S)
    except (GatewayError, httpx.HTTPError) as exc:
        hint = f"; check {plan.hosted.key_env} and FACTORY_RUN_MODEL" if plan.hosted is not None else ""
        raise FactoryError(
            f"the OpenClaw gateway failed: {_first_line(exc)}{hint} (log: {runtime.output_path})"
        ) from None
    warm = time.monotonic() - started - ready
    screen.line(f"gateway: ready on {runtime.url} in {ready:.1f} s, warm-up {warm:.1f} s (log: {runtime.output_path})")
    return runtime
