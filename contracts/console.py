"""Wire models and pure rules of the operator console's sign-in: operator tokens and sessions.

An operator signs in with an operator token (``factory console token create NAME``) or through a
reverse proxy that names them in a trusted header; either way the console hands out a session
cookie. Neither credential is stored: a store keeps the SHA-256 of an operator token and of a
session id (:func:`contracts.ingress.token_hash`), and compares presented ones in constant time.

Roles: ``admin`` sees everything and may act (redrive, drain, revoke, …); ``read_only`` sees
everything and can change nothing. Every action a session takes carries its CSRF token, derived
from the session id (:func:`csrf_token`), so a page on another site cannot act in its name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Literal

from contracts.models import EpochMs, NonEmpty, WireModel

OperatorRole = Literal["admin", "read_only"]
OPERATOR_ROLES: tuple[OperatorRole, ...] = ("admin", "read_only")
SESSION_TTL_DEFAULT_MS = 12 * 3_600_000
# Ended and expired sessions are kept this long (for the audit), then pruned.
SESSION_MEMORY_MS = 7 * 24 * 3_600_000


class OperatorToken(WireModel):
    """An operator's sign-in token as stored: its hash, never the token."""

    token_id: NonEmpty
    name: NonEmpty
    role: OperatorRole
    token_hash: NonEmpty
    created_at: EpochMs
    revoked_at: EpochMs | None = None


class ConsoleSession(WireModel):
    """A signed-in console session as stored: the hash of its id (the cookie), who, until when."""

    session_hash: NonEmpty
    operator: NonEmpty
    role: OperatorRole
    created_at: EpochMs
    expires_at: EpochMs
    # The operator token it was opened with (None: a reverse-proxy sign-in); revoking the token
    # ends the session.
    token_id: str | None = None
    ended_at: EpochMs | None = None


def new_operator_token() -> str:
    """256 bits, URL-safe, prefixed so that a leaked one is recognisable in a scan."""
    return "fop_" + secrets.token_urlsafe(32)


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: only someone holding the session id can compute it, and it
    reveals nothing about the id (HMAC-SHA-256 keyed by the id)."""
    return hmac.new(session_id.encode(), b"factory-console-csrf", hashlib.sha256).hexdigest()
