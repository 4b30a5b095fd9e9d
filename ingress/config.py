"""What ``factory serve`` is told: plain frozen values, built from settings at the edge."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_BODY_BYTES = 1_000_000


class IngressConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Unbound Telegram users: refused (told to pair) when True, else routed to the fallback agent.
    require_binding_for_telegram: bool = False
    # The agent unbound users talk to; None: the agent whose webhook received the update.
    fallback_agent_key: str | None = None
    max_body_bytes: int = Field(MAX_BODY_BYTES, ge=1024)
    # How long a webhook's configuration is reused before it is read again (reconfiguring takes
    # effect within this long).
    webhook_cache_s: float = Field(5.0, ge=0)
    # How often a reply stream looks for finished messages (FastAPI adds keep-alive comments).
    stream_poll_s: float = Field(0.25, gt=0)
