"""What every console page shares: the store it reads, the templates, the signed-in operator, the
answer's headers, and the pages for "sign in first" and "refused".

Every answer is ``Cache-Control: no-store`` with a strict Content-Security-Policy: scripts, styles
and forms from this origin only (htmx is vendored under /console/static), no framing, no referrer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from contracts.models import ReconcileRecord
from contracts.roles import (
    AgentStore,
    ConsoleStore,
    FleetStore,
    IngressStore,
    OperatorStore,
    ScheduleStore,
    SecretStore,
)
from ingress.console.auth import (
    LOGIN_COOKIE,
    LOGIN_FORM_TTL_S,
    NotSignedIn,
    Operator,
    Refused,
    SignIn,
    new_login_nonce,
    set_cookie,
)
from ingress.console.config import ConsoleConfig
from ingress.console.text import finalize, multiline, visible

HERE = Path(__file__).parent
PREFIX = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class ConsoleStores(
    OperatorStore, FleetStore, AgentStore, IngressStore, SecretStore, ScheduleStore, ConsoleStore, Protocol
):
    """What the console reads and repairs: every role an operator looks at."""


class PlanSource(Protocol):
    """A reconcile dry run on demand, injected by the composition root (the console never imports
    the autoscaler): what ``factory reconcile --dry-run`` would print, as a record."""

    async def dry_run(self) -> ReconcileRecord: ...


def _when(ms: int | None) -> str:
    if ms is None:
        return "–"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _duration(ms: float | None) -> str:
    if ms is None:
        return "–"
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7_200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3_600:.1f} h"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template is HTML
        finalize=finalize,  # …and every value shown with its control characters visible
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, duration=_duration, multiline=multiline, visible=visible)
    return env


class Site:
    def __init__(self, store: ConsoleStores, config: ConsoleConfig, plans: PlanSource | None) -> None:
        self.store = store
        self.config = config
        self.plans = plans
        self.signin = SignIn(store, config)
        self.env = environment()

    async def operator(self, request: Request) -> Operator:
        return await self.signin.operator(request)

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any],
        *,
        operator: Operator | None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        body = self.env.get_template(template).render(
            prefix=PREFIX, operator=operator, refresh_s=self.config.refresh_s, path=request.url.path, **context
        )
        response = HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})
        new_session = getattr(request.state, "new_session", None)
        if new_session:
            self.signin.session_cookie(response, request, new_session)
        return response

    def login_page(
        self, request: Request, *, error: str | None = None, status: int = 401, next_path: str | None = None
    ) -> HTMLResponse:
        """The sign-in form; afterwards the operator goes on to ``next_path`` (a refused sign-in
        keeps the one its form carried), or to the page they asked for."""
        nonce = new_login_nonce()
        if next_path is None:
            next_path = request.url.path if request.method == "GET" else PREFIX
            if request.url.query and request.method == "GET":
                next_path += "?" + request.url.query
        context = {"error": error, "nonce": nonce, "next": safe_next(next_path), "mode": self.config.auth}
        headers = {"HX-Redirect": f"{PREFIX}/login"} if request.headers.get("hx-request") else None
        response = self.page(request, "login.html", context, operator=None, status=status, headers=headers)
        set_cookie(response, request, LOGIN_COOKIE, nonce, LOGIN_FORM_TTL_S)
        return response

    def install(self, app: FastAPI) -> None:
        """The app-wide answers to "not signed in" and "refused" (they are raised inside routes)."""

        async def not_signed_in(request: Request, _: Exception) -> Response:
            return self.login_page(request)

        async def refused(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, Refused)
            context = {"title": exc.title, "detail": exc.detail}
            operator = await self._maybe_operator(request)
            return self.page(request, "refused.html", context, operator=operator, status=403)

        app.add_exception_handler(NotSignedIn, not_signed_in)
        app.add_exception_handler(Refused, refused)

    async def _maybe_operator(self, request: Request) -> Operator | None:
        try:
            return await self.operator(request)
        except NotSignedIn:
            return None


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a console path of ours, never another site."""
    if not path or not path.startswith(PREFIX) or path.startswith("//") or "\\" in path:
        return PREFIX
    return path
