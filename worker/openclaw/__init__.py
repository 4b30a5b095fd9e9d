"""OpenClaw as the worker's Delivery target: the clients of a running gateway.

    ``WsDelivery``   WebSocket ``agent`` RPC, idempotent on the queue message id (preferred)
    ``HttpDelivery`` ``POST /v1/chat/completions``, simpler, not idempotent
    ``session_key``  the one OpenClaw session of a conversation

Running a gateway (install, config, process, the offline stub model) is the ``gateway`` package's.
"""

from __future__ import annotations

from worker.openclaw.http import HttpDelivery
from worker.openclaw.sessions import SessionLocks, conversation_slug, session_key
from worker.openclaw.ws import WsDelivery

__all__ = [
    "HttpDelivery",
    "SessionLocks",
    "WsDelivery",
    "conversation_slug",
    "session_key",
]
