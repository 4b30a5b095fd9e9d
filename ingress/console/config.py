"""What the operator console is told: plain frozen values, built from settings at the edge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.console import SESSION_TTL_DEFAULT_MS

ConsoleAuth = Literal["token", "header"]


class ConsoleConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # token: operators sign in with an operator token (`factory console token create NAME`);
    # header: a reverse proxy in front signs them in and names them in ``trusted_header``.
    auth: ConsoleAuth = "token"
    trusted_header: str | None = None
    # Header mode: who may act (the rest the proxy lets in see everything, read-only); "*": everyone.
    admins: frozenset[str] = frozenset()
    session_ttl_ms: int = Field(SESSION_TTL_DEFAULT_MS, ge=60_000)
    # How often the live parts of a page refresh themselves.
    refresh_s: float = Field(3.0, gt=0)
    # The throughput and latency figures: the window, its buckets, and how many settled messages
    # are read at most (the figures then cover the newest ones, and say so).
    window_ms: int = Field(3_600_000, ge=60_000)
    bucket_ms: int = Field(60_000, ge=1_000)
    settled_limit: int = Field(5_000, ge=1)

    def role_for(self, user: str) -> Literal["admin", "read_only"]:
        return "admin" if "*" in self.admins or user in self.admins else "read_only"
