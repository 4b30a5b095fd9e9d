"""Who is looking: operator sign-in, the session cookie, CSRF, and what each role may do.

* **token** mode (default): ``POST /console/login`` with an operator token. The store keeps the
  token's SHA-256; the presented token is looked up by its hash and compared in constant time.
* **header** mode: a reverse proxy signs operators in and names them in a trusted header
  (``FACTORY_CONSOLE_TRUSTED_HEADER``); the console must then be reachable only through it.
  Operators listed in ``FACTORY_CONSOLE_ADMINS`` may act; the others see everything, read-only.

Either way the browser holds a session cookie: a random id (the store keeps its hash), HttpOnly,
SameSite=Strict, Path=/console, Secure when the request came over TLS (directly, or as a proxy's
``X-Forwarded-Proto: https`` says). Every state-changing form carries the session's CSRF token
(:func:`contracts.console.csrf_token`), checked before anything is done; the login form carries a
token of its own, matched against a short-lived cookie, so no other site can sign a browser in.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request, Response

from contracts.console import ConsoleSession, OperatorRole, csrf_token, new_session_id
from contracts.ingress import token_hash, token_matches
from ingress.console.config import ConsoleConfig

if TYPE_CHECKING:
    from ingress.console.site import ConsoleStores

SESSION_COOKIE = "factory_console"
LOGIN_COOKIE = "factory_console_login"
COOKIE_PATH = "/console"
LOGIN_FORM_TTL_S = 1_800


class NotSignedIn(Exception):
    """No live session (and, in header mode, no trusted header): the login page answers."""


class Refused(Exception):
    """A signed-in operator may not do this: read-only, or the form's CSRF token is missing or wrong."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail


@dataclass(frozen=True)
class Operator:
    name: str
    role: OperatorRole
    session_hash: str
    csrf: str

    @property
    def can_act(self) -> bool:
        return self.role == "admin"


def over_tls(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=over_tls(request),
    )


class SignIn:
    def __init__(self, store: ConsoleStores, config: ConsoleConfig) -> None:
        self.store = store
        self.config = config

    async def operator(self, request: Request) -> Operator:
        """The signed-in operator, or :class:`NotSignedIn`. In header mode a new session is opened
        for the proxy's user on the way (``request.state.new_session`` carries its id to the answer)."""
        session_id = request.cookies.get(SESSION_COOKIE, "")
        session = await self.store.find_console_session(token_hash(session_id)) if session_id else None
        if self.config.auth == "header":
            return await self._from_proxy(request, session_id, session)
        if session is None:
            raise NotSignedIn
        return Operator(session.operator, session.role, session.session_hash, csrf_token(session_id))

    async def _from_proxy(self, request: Request, session_id: str, session: ConsoleSession | None) -> Operator:
        assert self.config.trusted_header is not None  # checked when the config was built
        user = request.headers.get(self.config.trusted_header, "").strip()
        if not user:
            raise NotSignedIn
        # The proxy's word decides the role at every request, so a change of admins applies at once.
        role = self.config.role_for(user)
        if session is None or session.operator != user:
            session_id = new_session_id()
            session = await self._open(session_id, user, role, token_id=None)
            request.state.new_session = session_id
        return Operator(user, role, session.session_hash, csrf_token(session_id))

    async def login(self, presented: str) -> tuple[str, ConsoleSession] | None:
        """Check an operator token; on success a new session: (its id for the cookie, the session)."""
        presented = presented.strip()
        token = await self.store.find_operator_token(token_hash(presented)) if presented else None
        if token is None or not token_matches(presented, token.token_hash):
            return None
        session_id = new_session_id()
        return session_id, await self._open(session_id, token.name, token.role, token_id=token.token_id)

    async def _open(self, session_id: str, operator: str, role: OperatorRole, token_id: str | None) -> ConsoleSession:
        now = await self.store.now_ms()
        session = ConsoleSession(
            session_hash=token_hash(session_id),
            operator=operator,
            role=role,
            token_id=token_id,
            created_at=now,
            expires_at=now + self.config.session_ttl_ms,
        )
        return await self.store.create_console_session(session)

    async def logout(self, operator: Operator) -> None:
        await self.store.end_console_session(operator.session_hash)

    def session_cookie(self, response: Response, request: Request, session_id: str) -> None:
        set_cookie(response, request, SESSION_COOKIE, session_id, self.config.session_ttl_ms // 1000)


def check_csrf(operator: Operator, csrf: str | None) -> None:
    """Before a form is acted on: it came from this session's own page."""
    if not csrf or not hmac.compare_digest(operator.csrf, csrf):
        raise Refused(
            "Refused: the form's security token is missing or wrong",
            "Nothing was changed. Forms expire with your session, and a page on another site cannot "
            "act for you. Reload the page and try again.",
        )


def check_action(operator: Operator, csrf: str | None) -> None:
    """Before any state-changing action: the session's own form, and a role that may act."""
    check_csrf(operator, csrf)
    if not operator.can_act:
        raise Refused(
            "Refused: read-only operator",
            f"{operator.name} can look at everything here but change nothing. Ask an admin.",
        )


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def login_nonce_matches(request: Request, presented: str | None) -> bool:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    return bool(expected) and bool(presented) and hmac.compare_digest(expected, presented or "")
