"""OpenClaw as the worker's Delivery target, and the managed gateway runtime.

Delivery (what the worker calls per job):
    ``WsDelivery``   WebSocket ``agent`` RPC, idempotent on the queue message id (preferred)
    ``HttpDelivery`` ``POST /v1/chat/completions``, simpler, not idempotent
    ``session_key``  the one OpenClaw session of a conversation

Runtime (what ``factory run`` and the tests start):
    ``ensure_openclaw`` installs the pinned gateway into the user cache, once
    ``GatewayRuntime``  config + start/stop of one gateway on loopback
    ``worker.openclaw.stub_llm.StubLLMProcess`` the offline stub model (not re-exported here:
    the stub runs as ``python -m worker.openclaw.stub_llm``, which must not be imported twice)
"""

from __future__ import annotations

from worker.openclaw.config import AgentSpec, CompatibleModel, HostedModel, ModelChoice
from worker.openclaw.errors import GatewayError, GatewayInstallError, GatewayStartError
from worker.openclaw.gateway import GatewayRuntime
from worker.openclaw.http import HttpDelivery
from worker.openclaw.install import OPENCLAW_VERSION, OpenClawInstall, default_cache_dir, ensure_openclaw
from worker.openclaw.sessions import SessionLocks, conversation_slug, session_key
from worker.openclaw.ws import WsDelivery

__all__ = [
    "OPENCLAW_VERSION",
    "AgentSpec",
    "CompatibleModel",
    "GatewayError",
    "GatewayInstallError",
    "GatewayRuntime",
    "GatewayStartError",
    "HostedModel",
    "HttpDelivery",
    "ModelChoice",
    "OpenClawInstall",
    "SessionLocks",
    "WsDelivery",
    "conversation_slug",
    "default_cache_dir",
    "ensure_openclaw",
    "session_key",
]
