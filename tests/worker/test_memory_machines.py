"""The agent remembers: conversations move between machines (real gateways on their own state dirs).

Two "machines", each a real OpenClaw gateway on its own state directory, share one store:

* **A** serves conversations X, then Y and Z. X's agent has a workspace (SOUL.md, two skills of
  which one is allowed) and a bridge to a loopback app; the state dir also holds a global skill
  that is not allowed. X talks three turns (one of them a bridge call through the agent's exec
  tool) and is drained first: its pinned worker snapshotted the agent's state when it ran out of
  work, X alone.
  Y and Z talk one turn each and are drained too.
* Then Y's snapshot is corrupted and Z's deleted.
* **B** is a fresh machine for all three: before its gateway starts it refuses Y's corrupt
  snapshot (reported to the store), finds none for Z, and restores X's. It answers X's turn 4
  with A's memory (the gateway's own session, nothing seeded), and Y's and Z's next turns from
  the stored history seeded on the first turn only. Every job runs.

The stub model makes memory observable: ``CONTEXT?`` is answered with how many earlier user turns
and which ``MARK-…`` words the model was shown, and its log says whether a history preamble came.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from contracts.models import AgentProfile, BridgeConfig, SetWorkerStatusRequest
from contracts.sqlite import SqliteStore
from gateway.config import CompatibleModel
from gateway.install import OpenClawInstall, ensure_openclaw
from gateway.runtime import GatewayRuntime
from gateway.stub_llm import StubLLMProcess
from tests.contract.helpers import TEST_BOX
from tests.fakes.bridge_app import SERVICE_ID, SERVICE_KEY, BridgeApp
from tests.worker.harness import build_worker, eventually, message
from worker.boot import BootReport, boot_machine, bridge_config_path
from worker.loop import WorkerExit
from worker.memory import AgentMemory
from worker.metrics import WorkerMetrics
from worker.openclaw.ws import WsDelivery

pytestmark = [pytest.mark.anyio, pytest.mark.gateway, pytest.mark.slow, pytest.mark.timeout(900)]

AGENT = "memo"
X, Y, Z = "conv-x", "conv-y", "conv-z"
_CONTEXT = re.compile(r"STUB-CONTEXT: earlier_user_turns=(\d+) markers=(\S+)")


def skill(name: str, marker: str) -> str:
    return f"---\nname: {name}\ndescription: Does {name} things. {marker}\n---\nUse it when asked.\n"


def profile(app_url: str) -> AgentProfile:
    return AgentProfile(
        agent_key=AGENT,
        workspace_files={
            "SOUL.md": "You remember what people tell you. MARK-SOUL1\n",
            "skills/skill-x/SKILL.md": skill("skill-x", "MARK-SKILLX"),
            "skills/skill-y/SKILL.md": skill("skill-y", "MARK-SKILLY"),
        },
        skills=["skill-x"],
        bridge_config=BridgeConfig(
            base_url=app_url,
            service_id=SERVICE_ID,
            app_key="crm",
            service_key_secret_ref="crm.key",
            allowed_hosts=["127.0.0.1"],
        ),
    )


@dataclass
class Machine:
    """One machine: a state directory, its gateway once started, and what its boot reported."""

    name: str
    state_dir: Path
    runtime: GatewayRuntime | None = None
    boots: dict[str, BootReport] | None = None

    def restore(self, conversation: str) -> str:
        """How this machine's boot restored the conversation: restored, none, corrupt, …"""
        assert self.boots is not None
        outcome = self.boots[conversation].restore
        return "not booted" if outcome is None else outcome.status

    def bridge_call(self, agent_id: str) -> list[str]:
        config = bridge_config_path(self.state_dir / "factory" / "bridge", agent_id)
        return [sys.executable, "-m", "factory", "bridge", "call", "--config", str(config)]


@dataclass
class World:
    install: OpenClawInstall
    stub: StubLLMProcess
    store: SqliteStore
    app: BridgeApp
    root: Path

    def machine(self, name: str) -> Machine:
        return Machine(name, self.root / f"machine-{name}")

    def memory(self, machine: Machine, worker_id: str) -> AgentMemory:
        return AgentMemory(
            store=self.store,
            state_dir=machine.state_dir,
            worker_id=worker_id,
            secrets=[SERVICE_KEY],
            metrics=WorkerMetrics(),
        )

    async def boot(self, machine: Machine, *conversations: str) -> None:
        """Before the gateway starts: restore and provision for each conversation it will serve."""
        machine.boots = {}
        for conv in conversations:
            memory = self.memory(machine, f"{machine.name}-boot")
            machine.boots[conv] = await boot_machine(memory, conv, machine.bridge_call)

    async def start(self, machine: Machine) -> None:
        assert machine.boots is not None
        specs = {r.agent.id: r.agent for r in machine.boots.values() if r.agent is not None}
        machine.runtime = GatewayRuntime(
            self.install,
            machine.state_dir,
            model=CompatibleModel(base_url=self.stub.base_url),
            agents=list(specs.values()),
            ready_timeout_s=300,  # a loaded 2-core machine can take minutes to start three gateways
        )
        await machine.runtime.astart()

    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stub.log_path.read_text().splitlines() if line.strip()]

    def call_for(self, text: str) -> dict[str, Any]:
        """The (last) model call answering the user turn ``text`` (not a tool-result follow-up)."""
        found = [c for c in self.calls() if c["user_text"] == text and c["tool_call"] is None]
        assert found, f"no model call for {text!r}"
        return found[-1]


def context(reply: str) -> tuple[int, set[str]]:
    found = _CONTEXT.search(reply)
    assert found is not None, reply
    return int(found.group(1)), set(found.group(2).split(","))


async def reply_to(store: SqliteStore, conversation: str, text: str) -> str:
    conv = await store.get_conversation(conversation, 100)
    assert conv is not None
    history = conv.history
    for i, turn in enumerate(history):
        if turn.role == "user" and turn.content == text and i + 1 < len(history):
            return history[i + 1].content
    raise AssertionError(f"no reply to {text!r} in {conversation}")


async def settled(store: SqliteStore, conversation: str) -> bool:
    conv = await store.get_conversation(conversation)
    return conv is not None and conv.queued == 0 and conv.processing == 0


async def serve(world: World, machine: Machine, conversation: str, texts: list[str], *, drain: bool) -> WorkerExit:
    """A worker pinned to ``conversation`` on ``machine`` answers what is queued there plus ``texts``,
    then is drained (``drain``) or idles out; it snapshots its agent when it runs out of work, so it
    exits with nothing new to save."""
    assert machine.runtime is not None
    for text in texts:
        await world.store.enqueue(message(conversation, text, agent_key=AGENT))
    worker_id = f"{machine.name}-{conversation}"
    async with WsDelivery(machine.runtime.ws_url, machine.runtime.token, timeout_s=240) as delivery:
        worker, _ = build_worker(
            world.store,
            delivery,
            worker_id=worker_id,
            memory=world.memory(machine, worker_id),
            seed=True,
            bridge_dir=machine.state_dir / "factory" / "bridge",
            conversation_id=conversation,
            idle_exit_s=None if drain else 0.5,
        )
        async with anyio.create_task_group() as tg:

            async def drain_when_settled() -> None:
                await eventually(lambda: settled(world.store, conversation), timeout_s=400, what=conversation)
                request = SetWorkerStatusRequest(worker_id=worker_id, status="draining", reason="scaled down")
                await world.store.fleet_set_worker_status(request)

            if drain:
                tg.start_soon(drain_when_settled)
            exit_ = await worker.run()
    assert await settled(world.store, conversation)
    return exit_


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("machines")
    install = ensure_openclaw(os.environ)
    with StubLLMProcess.start(root / "stub.jsonl", output=root / "stub.out") as stub, BridgeApp() as app:
        store = SqliteStore(root / "factory.db", secrets_box=TEST_BOX)
        yield World(install, stub, store, app, root)
        anyio.run(store.aclose)


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def machines(world: World) -> AsyncIterator[dict[str, Machine]]:
    started: dict[str, Machine] = {}
    try:
        yield started
    finally:
        for machine in started.values():
            if machine.runtime is not None:
                await machine.runtime.astop()


async def test_memory_follows_the_conversation_across_machines(world: World, machines: dict[str, Machine]) -> None:
    store = world.store
    await store.upsert_agent_profile(profile(world.app.url))
    await store.import_secret("crm.key", SecretStr(SERVICE_KEY))

    # ------------------------------------------------------------------ machine A: X, then Y and Z
    a = machines.setdefault("A", world.machine("A"))
    await store.enqueue(message(X, "hello MARK-T1", agent_key=AGENT))
    await world.boot(a, X)
    assert a.restore(X) == "none"
    global_skill = a.state_dir / "skills" / "skill-z" / "SKILL.md"  # every agent's on this machine
    global_skill.parent.mkdir(parents=True)
    global_skill.write_text(skill("skill-z", "MARK-SKILLZ"))
    await world.start(a)

    bridge = " ".join(a.bridge_call("main"))
    call_app = "TOOL:exec " + json.dumps({"command": f"{bridge} tasks.list --args '{{\"limit\": 2}}'"})
    x_on_a = await serve(world, a, X, [call_app, "CONTEXT? on A"], drain=True)
    # X's snapshot is taken now, before Y and Z exist on this machine: it holds X's session only.
    y_on_a = await serve(world, a, Y, ["hello from y MARK-Y1"], drain=True)
    z_on_a = await serve(world, a, Z, ["hello from z MARK-Z1"], drain=True)
    assert a.runtime is not None
    await a.runtime.astop()

    # The bridge call went through the agent's exec tool to the app, with the service headers.
    assert "water the plants" in await reply_to(store, X, call_app)
    assert world.app.calls == [{"app": "crm", "functionKey": "tasks.list", "args": {"limit": 2}}]
    # Workspace and allowlist: SOUL.md and the allowed skill are shown; the other workspace skill
    # and the global one are not.
    turns, markers = context(await reply_to(store, X, "CONTEXT? on A"))
    assert turns == 2 and {"MARK-SOUL1", "MARK-SKILLX", "MARK-T1"} <= markers
    assert not markers & {"MARK-SKILLY", "MARK-SKILLZ"}
    for exit_ in (x_on_a, y_on_a, z_on_a):
        assert exit_.reason == "control" and exit_.snapshot is None  # nothing new since the idle one
    [x_snapshot] = await store.snapshot_list(X)
    assert (x_snapshot.status, x_snapshot.reason) == ("ready", "idle")

    # ------------------------------------------------------------------ Y's snapshot corrupt, Z's gone
    y_latest = await store.snapshot_latest("default", AGENT, Y)
    assert y_latest is not None
    blob = store.blobs.path(y_latest.sha256)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped bit in the middle of Y's archive
    blob.write_bytes(bytes(data))
    assert (await store.snapshot_prune(0, Z)).expired == 1

    # ------------------------------------------------------------------ machine B boots for all three
    b = machines.setdefault("B", world.machine("B"))
    await world.boot(b, Y, Z, X)
    assert (b.restore(Y), b.restore(Z), b.restore(X)) == ("corrupt", "none", "restored")
    [y_row] = [r for r in await store.snapshot_list(Y) if r.snapshot_id == y_latest.snapshot_id]
    assert y_row.status == "failed" and y_row.error is not None and "corrupt" in y_row.error
    await world.start(b)

    # X: turn 4 answered with A's memory, from the restored session; nothing seeded.
    x_on_b = await serve(world, b, X, ["CONTEXT? on B"], drain=False)
    turns, markers = context(await reply_to(store, X, "CONTEXT? on B"))
    assert turns == 3 and {"MARK-T1", "MARK-SOUL1"} <= markers
    assert world.call_for("CONTEXT? on B")["seeded_turns"] == 0
    assert x_on_b.reason == "idle" and x_on_b.snapshot is None
    assert [(r.status, r.reason) for r in await store.snapshot_list(X)] == [("ready", "idle")] * 2

    # Y (corrupt snapshot refused) and Z (snapshot deleted): seeded from the stored history, once.
    await serve(world, b, Y, ["CONTEXT? y on B", "CONTEXT? y again on B"], drain=False)
    turns, markers = context(await reply_to(store, Y, "CONTEXT? y on B"))
    assert turns == 1 and {"MARK-Y1", "MARK-SOUL1", "MARK-SKILLX"} <= markers
    assert world.call_for("CONTEXT? y on B")["seeded_turns"] > 0
    again = world.call_for("CONTEXT? y again on B")
    assert again["seeded_turns"] == 0 and "MARK-Y1" in again["markers"]  # remembered, not seeded twice
    await serve(world, b, Z, ["CONTEXT? z on B"], drain=False)
    turns, markers = context(await reply_to(store, Z, "CONTEXT? z on B"))
    assert turns == 1 and "MARK-Z1" in markers and "MARK-Y1" not in markers
    for conv, done in ((X, 4), (Y, 3), (Z, 2)):  # every job ran: nothing failed, nothing dead-lettered
        record = await store.get_conversation(conv)
        assert record is not None and (record.done, record.dead_letters) == (done, 0)
