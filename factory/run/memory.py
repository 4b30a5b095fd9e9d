"""The memory check: a conversation moves to a fresh machine, and the agent still knows its earlier turns.

After the burst, the fleet has scaled to zero and every pinned worker has snapshotted its agent.
The check boots a second machine (its own state directory and gateway): the conversation with the
most turns is restored from its newest snapshot before that gateway starts, a follow-up question
is queued, and the autoscaler launches a worker pinned to the conversation on the new machine.
With the offline stub the question is ``CONTEXT?``, whose answer counts the earlier user turns the
model was shown, so the check verifies itself; a hosted model is asked what it remembers, and its
answer is shown.
"""

from __future__ import annotations

import re
import secrets
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from autoscaler.providers.local import LocalProvider
from autoscaler.reconciler import Reconciler
from contracts.errors import FactoryError
from factory.fleet import launch_specs, scaling_policy
from factory.run.burst import BurstMessage
from factory.run.fleet import fleet_settings, run_fleet
from factory.run.gateway import READY_TIMEOUT_S, stop_gateway
from factory.run.model import ModelPlan
from factory.run.screen import Screen, excerpt
from factory.run.state import Outcome, RunState
from factory.settings import StoreSettings
from factory.stores import FullStore
from gateway.errors import GatewayError
from gateway.install import OpenClawInstall
from gateway.runtime import GatewayRuntime
from worker.boot import boot_machine
from worker.memory import AgentMemory

_CONTEXT = re.compile(r"earlier_user_turns=(\d+)")
STUB_QUESTION = "CONTEXT? (factory run: what do you remember of this chat?)"
HOSTED_QUESTION = "What have I asked you so far in this chat? One short line per question."


@dataclass
class MemoryCheck:
    conversation: str
    earlier_turns: int
    first_worker: str = "-"
    second_worker: str = "-"
    restored: str = "not tried"
    snapshot_bytes: int = 0
    restore_s: float = 0.0
    remembered: int | None = None  # the stub's count; None with a hosted model
    reply: str | None = None

    @property
    def ok(self) -> bool:
        return self.remembered is None or self.remembered >= self.earlier_turns

    def summary(self) -> dict[str, object]:
        return {
            "conversation": self.conversation,
            "earlierTurns": self.earlier_turns,
            "restore": self.restored,
            "rememberedTurns": self.remembered,
            "ok": self.ok,
        }


async def _busiest(store: FullStore, state: RunState) -> tuple[str, int]:
    counts: dict[str, int] = {}
    for tracked in state.messages.values():
        if tracked.status == "done":
            counts[tracked.conversation_id] = counts.get(tracked.conversation_id, 0) + 1
    if not counts:
        raise FactoryError("memory check: no conversation finished a turn to move")
    conversation = max(sorted(counts), key=lambda c: counts[c])
    return conversation, counts[conversation]


async def check_memory(
    screen: Screen,
    stack: AsyncExitStack,
    install: OpenClawInstall,
    first: GatewayRuntime,
    store: FullStore,
    store_settings: StoreSettings,
    provider: LocalProvider,
    state: RunState,
    outcome: Outcome,
    plan: ModelPlan,
    demo: Path,
    max_workers: int,
) -> MemoryCheck:
    conversation, turns = await _busiest(store, state)
    check = MemoryCheck(conversation, turns)
    check.first_worker = _worker_of(state, conversation)
    machine = demo / "machine-b"
    # Boot before the gateway starts: OpenClaw keeps its session database open.
    memory = AgentMemory(store=store, state_dir=machine, worker_id=f"factory-run-boot-{secrets.token_hex(3)}")
    started = time.monotonic()
    report = await boot_machine(memory, conversation, lambda agent: [])
    check.restore_s = time.monotonic() - started
    if report.restore is not None:
        check.restored = report.restore.status
        check.snapshot_bytes = report.restore.size_bytes
    if report.agent is None:
        raise FactoryError(f"memory check: the store does not know {conversation}")
    screen.line(
        f"memory: moving {conversation} ({turns} turns so far, answered by {check.first_worker}) to a fresh "
        f"machine; its snapshot: {_restore_words(check)}"
    )
    second = GatewayRuntime(
        install, machine, model=first.model, agents=(report.agent,), ready_timeout_s=READY_TIMEOUT_S
    )
    stack.push_async_callback(stop_gateway, outcome, second, "gateway of machine B")
    try:
        with screen.step("starting machine B's OpenClaw gateway…"):
            await second.astart()
    except GatewayError as exc:
        raise FactoryError(f"memory check: machine B's gateway failed: {exc} (log: {second.output_path})") from None

    question = STUB_QUESTION if plan.hosted is None else HOSTED_QUESTION
    scale = fleet_settings(second, max_workers)
    reconciler = Reconciler(
        store, provider, scaling_policy(scale), launch_specs(scale, store_settings, "local", grace_s=10)
    )
    user = conversation.split(":")[-1]
    state.total += 1
    state.enqueue_done = False
    await run_fleet(screen, state, store, provider, reconciler, [BurstMessage(conversation, user, question)])
    asked = next(t for t in reversed(state.finished) if t.conversation_id == conversation and t.text == question)
    check.second_worker = state.worker_name(asked.worker_id)
    check.reply = asked.reply
    if plan.hosted is None and asked.reply is not None and (found := _CONTEXT.search(asked.reply)):
        check.remembered = int(found.group(1))
    _report(screen, check, question)
    return check


def _worker_of(state: RunState, conversation: str) -> str:
    names = {state.worker_name(t.worker_id) for t in state.messages.values() if t.conversation_id == conversation}
    return ", ".join(sorted(names)) or "-"


def _restore_words(check: MemoryCheck) -> str:
    if check.restored == "restored":
        return f"restored on machine B ({check.snapshot_bytes / 1024:.0f} KiB in {check.restore_s:.1f} s)"
    if check.restored == "none":
        return "none found; the new worker seeds the session from the stored history"
    return f"{check.restored}; the new worker seeds the session from the stored history"


def _report(screen: Screen, check: MemoryCheck, question: str) -> None:
    moved = (
        f"memory: {check.conversation} moved from {check.first_worker} (machine A) to {check.second_worker} (machine B)"
    )
    if check.remembered is None:
        screen.line(f"{moved}; asked {question!r}, the agent answered: {excerpt(check.reply, 300)}")
    elif check.ok:
        screen.line(f"{moved}: the agent still knows its {check.remembered} earlier turns ✓", style="green")
    else:
        screen.line(
            f"{moved}: the agent saw only {check.remembered} of its {check.earlier_turns} earlier turns ✗", style="red"
        )
