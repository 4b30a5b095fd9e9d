"""A machine's boot, before its gateway starts: the agent's memory and workspace in place.

For a worker pinned to a conversation, :func:`boot_machine` asks the store for the conversation's
agent and newest snapshot, restores the snapshot into the gateway's state directory, and writes
the profile's workspace (plus the baked ``agent-bridge`` skill when the agent has a bridge). It
returns the gateway config entry for the agent (:class:`gateway.config.AgentSpec`): the skill
allowlist, and host exec opted in only for an agent whose bridge skill runs a command.

The gateway must not be running on the state directory yet: OpenClaw keeps its session database
open, and a restored file under a live gateway would be corrupted. ``factory worker prepare`` runs
this in the worker image before the gateway starts; ``factory run`` and the tests call it before
they start theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
import structlog

from contracts.models import BRIDGE_SKILL, AgentProfile
from gateway.config import AgentSpec
from gateway.workspace import bridge_skill, write_workspace
from worker.memory import AgentMemory, MemoryOutcome, clear_scratch

log = structlog.get_logger("worker.boot")
# The command the bridge skill runs for an agent (it names that agent's settings file).
BridgeCall = Callable[[str], Sequence[str]]


@dataclass(frozen=True)
class BootReport:
    conversation_id: str
    agent_key: str | None = None
    agent: AgentSpec | None = None
    restore: MemoryOutcome | None = None
    workspace_changes: tuple[str, ...] = ()


def bridge_config_path(bridge_dir: Path, agent_id: str) -> Path:
    """Where the worker keeps an agent's resolved bridge settings for ``factory bridge call``."""
    return bridge_dir / f"{agent_id}.json"


def workspace_files(profile: AgentProfile, bridge_call: Sequence[str]) -> dict[str, str]:
    """The profile's workspace files, plus the bridge skill if its bridge is enabled."""
    files = dict(profile.workspace_files)
    if profile.has_bridge:
        files[f"skills/{BRIDGE_SKILL}/SKILL.md"] = bridge_skill(bridge_call)
    return files


def agent_spec(profile: AgentProfile) -> AgentSpec:
    return AgentSpec(
        id=profile.openclaw_agent_id,
        skills=None if (visible := profile.visible_skills()) is None else tuple(visible),
        # The bridge skill runs a command; no other agent is given host exec by us.
        host_exec=True if profile.has_bridge else None,
    )


def provision(state_dir: Path, profile: AgentProfile, bridge_call: BridgeCall) -> tuple[AgentSpec, list[str]]:
    """Write the agent's workspace under ``state_dir``; returns its gateway config entry and what changed."""
    spec = agent_spec(profile)
    changed = write_workspace(state_dir / "workspaces" / spec.id, workspace_files(profile, bridge_call(spec.id)))
    return spec, changed


async def boot_machine(memory: AgentMemory, conversation_id: str, bridge_call: BridgeCall) -> BootReport:
    """Restore, then provision, for the conversation this machine serves (``memory.store`` knows it)."""
    await anyio.to_thread.run_sync(clear_scratch, memory.state_dir)
    boot = await memory.store.snapshot_boot(memory.workspace_id, conversation_id)
    if boot is None:
        log.warning(
            "boot: the store does not know this conversation yet; nothing to restore", conversation_id=conversation_id
        )
        return BootReport(conversation_id)
    restored = await memory.restore(boot)
    # The profile's files win over the snapshot's copies: an operator's edit takes effect at the next boot.
    spec, changed = await anyio.to_thread.run_sync(provision, memory.state_dir, boot.profile, bridge_call)
    log.info(
        "boot: machine prepared",
        conversation_id=conversation_id,
        agent_key=boot.agent_key,
        restore=restored.status,
        workspace_changes=len(changed),
        skills=list(spec.skills) if spec.skills is not None else "all",
    )
    return BootReport(conversation_id, boot.agent_key, spec, restored, tuple(changed))
