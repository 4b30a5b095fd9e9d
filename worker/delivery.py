"""The Delivery seam: hand one message to an agent and get its reply; and the SessionProbe seam:
does the gateway already hold a conversation's session (else the worker seeds it)?

Implementations: ``worker.openclaw`` (a real OpenClaw gateway over WebSocket RPC or HTTP).
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class DeliveryRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The queue message id: passed to the gateway as its idempotency key, so a redelivery of
    # the same message returns the first run's reply instead of calling the model again.
    message_id: str = Field(min_length=1)
    # One OpenClaw session per conversation: "agent:<agentId>:<conversation slug>".
    session_key: str = Field(min_length=1)
    agent_id: str = Field(default="main", min_length=1)
    text: str


class DeliveryReply(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    run_id: str | None = None


class Delivery(Protocol):
    async def deliver(self, request: DeliveryRequest) -> DeliveryReply:
        """Run one agent turn. Raises a ``worker.errors.DeliveryError`` subclass on failure."""
        ...

    async def probe(self, agent_id: str | None = None) -> None:
        """Raise a ``DeliveryError`` unless the gateway takes requests now (reachable, our token
        accepted); with ``agent_id``, also unless that agent runs a turn (one model call)."""
        ...

    async def aclose(self) -> None: ...


class SessionProbe(Protocol):
    async def has_session(self, agent_id: str, session_key: str) -> bool | None:
        """Whether the gateway keeps this session; None when it cannot tell (then nothing is seeded,
        so a session is never seeded twice). Raises a ``DeliveryError`` when the gateway is down."""
        ...
