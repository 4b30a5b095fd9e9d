"""The OpenClaw gateway config we generate, and the environment its secrets travel in.

Secrets are never written to the config file: the file holds ``${VAR}`` references that the gateway
resolves from its own process environment at load time. The state directory can then be copied
(snapshots) or read by an operator without leaking the gateway token or a provider key.

Config keys follow the docs shipped inside openclaw 2026.9.6 (``node_modules/openclaw/docs``);
several changed during 2026 (``agents.entries`` replaced ``agents.list``), so re-check on a bump.

Tool policy: an agent is talked to by strangers (Telegram users), so by default it gets no host
execution at all. ``tools.deny`` removes ``group:runtime`` (``exec``, ``process``,
``code_execution``) from what the model is offered, and ``group:automation`` and ``group:nodes``
with it (the ``gateway`` tool could rewrite this very policy, ``openclaw`` runs setup on the host,
``cron`` would start turns the queue never sees, nodes run commands on paired devices);
``tools.exec.mode`` is ``deny`` should anything reach exec anyway; elevated exec is off; and file
tools stay inside the agent's workspace (``tools.fs.workspaceOnly``: no reading
``/proc/self/environ`` or a store file next door). OpenClaw's own default is host exec without
approval (docs ``tools/exec.md``); an operator who wants exec opts in with ``allow_host_exec`` (the
worker image: ``FACTORY_OPENCLAW_ALLOW_EXEC=1``), which lifts the runtime group only. An agent with a
bridge opts in on its own (``AgentSpec.host_exec``: its bridge skill runs ``factory bridge call``):
then the runtime deny and ``exec.mode: deny`` move from ``tools`` into every other agent's entry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Env var names the generated config refers to; the runtime puts the values into the child's env.
TOKEN_ENV = "FACTORY_OPENCLAW_GATEWAY_TOKEN"
MODEL_KEY_ENV = "FACTORY_OPENCLAW_MODEL_API_KEY"
# Given NODE_COMPILE_CACHE, openclaw.mjs re-executes itself to move the cache into a folder of
# its own (<cache>/openclaw/<version>/<install marker>) unless this says it already has: that
# re-exec costs a second Node start, keeps a ~75 MB launcher alive as the gateway's parent for the
# gateway's whole life, and makes the pid we track the launcher's. Our caches are per install
# already (the image's, ``OpenClawInstall.compile_cache``), so the cache is used where it is.
COMPILE_CACHE_IN_PLACE = "OPENCLAW_PACKAGED_COMPILE_CACHE_RESPAWNED"

# OpenClaw's canonical agent id (packages/normalization-core agent-id.ts), lower case only: it
# lower-cases ids itself, and two of ours that differ by case would silently become one agent.
AGENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def check_agent_id(agent_id: str) -> str:
    if not AGENT_ID.fullmatch(agent_id):
        raise ValueError(
            f"agent id {agent_id!r} is not a canonical OpenClaw id: use 1-64 of a-z 0-9 _ -, starting with a-z 0-9"
        )
    return agent_id


class CompatibleModel(BaseModel):
    """An OpenAI-compatible chat-completions endpoint: our stub, or a local/hosted compatible server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(description="ends with /v1, e.g. http://127.0.0.1:8000/v1")
    model_id: str = "stub-model"
    provider_id: str = "stub"
    # OpenClaw accepts a dummy key for loopback/private hosts; a real server gets a real one.
    api_key: SecretStr = SecretStr("stub-local")
    context_window: int = 128_000
    max_tokens: int = 4_096


class HostedModel(BaseModel):
    """A provider OpenClaw ships support for, authenticated by the key its docs name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Literal["openai", "anthropic"]
    model: str = Field(min_length=1, description="e.g. gpt-5.5 or claude-opus-5")
    api_key: SecretStr

    @property
    def key_env(self) -> str:
        return {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}[self.provider]


ModelChoice = CompatibleModel | HostedModel


# The tools that run commands on the gateway's host.
HOST_EXEC_TOOLS = ("exec", "process")
RUNTIME_GROUP = "group:runtime"


class AgentSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    # None: <state dir>/workspaces/<id>, created empty.
    workspace: Path | None = None
    # The skills the agent may see (OpenClaw's agents.entries.<id>.skills); None: no allowlist.
    skills: tuple[str, ...] | None = None
    # Host exec for this agent: True opts in explicitly (the bridge skill runs a command), False
    # denies it, None leaves the gateway's default.
    host_exec: bool | None = None

    @field_validator("id")
    @classmethod
    def _canonical(cls, value: str) -> str:
        return check_agent_id(value)

    def entry(self, state_dir: Path, *, exec_denied_here: bool = False) -> dict[str, Any]:
        """This agent's ``agents.entries.<id>`` block. ``exec_denied_here``: the gateway-wide policy
        leaves host exec open for another agent's opt-in, so this agent (not opted in) closes it."""
        entry: dict[str, Any] = {"workspace": str(self.workspace or state_dir / "workspaces" / self.id)}
        if self.skills is not None:
            # An explicit list replaces inherited defaults; [] shows the agent no skill at all.
            entry["skills"] = list(self.skills)
        if self.host_exec is True:
            # exec alone: without `process` it runs in the foreground to the end (no auto-background
            # after yieldMs), so a slow bridge call still answers in the same turn.
            entry["tools"] = {"alsoAllow": ["exec"], "deny": ["process"]}
        elif exec_denied_here:
            entry["tools"] = {"deny": [RUNTIME_GROUP], "exec": {"mode": "deny"}}
        elif self.host_exec is False:
            entry["tools"] = {"deny": list(HOST_EXEC_TOOLS)}
        return entry


def gateway_config(
    *,
    port: int,
    state_dir: Path,
    agents: tuple[AgentSpec, ...],
    model: ModelChoice,
    heartbeat_every: str = "0m",
    allow_host_exec: bool = False,
) -> dict[str, Any]:
    """The config document (plain JSON) for one gateway on loopback; no secret values inside.

    ``allow_host_exec`` opts into OpenClaw's host exec tools (see the module docstring)."""
    if not agents:
        raise ValueError("agents: at least one agent is required")
    ids = [agent.id for agent in agents]
    if len(set(ids)) != len(ids):
        raise ValueError(f"agents: duplicate agent ids in {ids}")
    defaults: dict[str, Any] = {
        "model": {"primary": _model_ref(model), "fallbacks": []},
        # No BOOTSTRAP.md/SOUL.md templates: they would be injected into every prompt.
        "skipBootstrap": True,
        "systemAgent": {"agentId": ids[0]},
        # "0m" turns the cadence off: the worker decides when an agent runs, not a timer.
        "heartbeat": {"agentId": ids[0], "every": heartbeat_every},
    }
    # An agent's own opt-in (its bridge skill runs a command) lifts the gateway-wide deny, which
    # then moves into every other agent's entry: deny wins in either scope, so it cannot stay global.
    per_agent = not allow_host_exec and any(agent.host_exec is True for agent in agents)
    entries = {agent.id: agent.entry(state_dir, exec_denied_here=per_agent) for agent in agents}
    agents_block: dict[str, Any] = {"defaults": defaults, "entries": entries}
    if len(agents) > 1:
        # Required with more than one agent; every request then names its agent.
        agents_block["ownership"] = "explicit"
    config: dict[str, Any] = {
        "gateway": {
            "mode": "local",
            "port": port,
            "bind": "loopback",
            "auth": {"mode": "token", "token": f"${{{TOKEN_ENV}}}"},
            "http": {"endpoints": {"chatCompletions": {"enabled": True}}},
            # Nobody browses a worker's gateway: with the Control UI on, every start copied ~54 MB
            # of its assets into the state dir (a ~6 s sidecar that ready waited for, measured by
            # OPENCLAW_GATEWAY_STARTUP_TRACE), and its operator terminal (a host shell that
            # inherits the gateway's environment) would be one more way in.
            "controlUi": {"enabled": False},
            "terminal": {"enabled": False},
        },
        "agents": agents_block,
        "tools": tool_policy(allow_host_exec=allow_host_exec or per_agent),
        # The bundled memory plugin schedules a daily "dreaming" agent turn: surprise model calls.
        "plugins": {"entries": {"memory-core": {"config": {"dreaming": {"enabled": False}}}}},
        # The default file log goes to /tmp/openclaw/, outside the state dir.
        "logging": {"file": str(state_dir / "logs" / "openclaw.jsonl")},
    }
    models: dict[str, Any] = {"mode": "merge", "catalogRefresh": {"enabled": False}}
    if isinstance(model, CompatibleModel):
        models["providers"] = {model.provider_id: _compatible_provider(model)}
    config["models"] = models
    return config


def tool_policy(*, allow_host_exec: bool) -> dict[str, Any]:
    """``tools``: no host execution unless the operator opted in; files stay in the workspace."""
    policy: dict[str, Any] = {
        "deny": ["group:automation", "group:nodes"],
        "fs": {"workspaceOnly": True},
        "elevated": {"enabled": False},
    }
    if not allow_host_exec:
        policy["deny"].insert(0, RUNTIME_GROUP)
        policy["exec"] = {"mode": "deny"}
    return policy


# What a gateway process takes from the environment it is started from, besides its secrets:
# process basics, Node's options and OpenClaw's own switches. Nothing else: a container's store
# token, cloud credentials or other model keys never reach the gateway (nor an agent's tools).
GATEWAY_BASICS = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "NODE_OPTIONS",
    # The image's compile cache (warm-cache.sh): without it here the gateway compiled every module
    # afresh on each boot, and the cache the image carries was never read.
    "NODE_COMPILE_CACHE",
    COMPILE_CACHE_IN_PLACE,
    "NO_COLOR",
    "OPENCLAW_STATE_DIR",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_HOME",
    "OPENCLAW_GATEWAY_PORT",
    "OPENCLAW_OFFLINE",
    "OPENCLAW_DISABLE_BONJOUR",
    "OPENCLAW_NO_AUTO_UPDATE",
    "OPENCLAW_NO_RESPAWN",
    "OPENCLAW_SKIP_CHANNELS",
)


def gateway_env(environ: Mapping[str, str], token: SecretStr, model: ModelChoice) -> dict[str, str]:
    """The whole environment of a gateway started from ``environ``: the basics it names, HOME in
    OpenClaw's home, and the secrets the config refers to (:func:`secret_env`)."""
    env = {name: environ[name] for name in GATEWAY_BASICS if name in environ}
    if "OPENCLAW_HOME" in environ:
        env["HOME"] = environ["OPENCLAW_HOME"]
    env.update(secret_env(token, model))
    return env


def secret_env(token: SecretStr, model: ModelChoice) -> dict[str, str]:
    """The secret values the config refers to, for the gateway process environment only."""
    env = {TOKEN_ENV: token.get_secret_value()}
    if isinstance(model, CompatibleModel):
        env[MODEL_KEY_ENV] = model.api_key.get_secret_value()
    else:
        env[model.key_env] = model.api_key.get_secret_value()
    return env


def _model_ref(model: ModelChoice) -> str:
    if isinstance(model, CompatibleModel):
        return f"{model.provider_id}/{model.model_id}"
    return f"{model.provider}/{model.model}"


def _compatible_provider(model: CompatibleModel) -> dict[str, Any]:
    return {
        "baseUrl": model.base_url,
        "apiKey": f"${{{MODEL_KEY_ENV}}}",
        "api": "openai-completions",
        "models": [
            {
                "id": model.model_id,
                "name": model.model_id,
                "reasoning": False,
                "input": ["text"],
                "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0},
                "contextWindow": model.context_window,
                "maxTokens": model.max_tokens,
            }
        ],
    }
