"""What operators change from the console: sign in and out, redrive, drain, and the safe repairs.

Every action is a form POST that carries the session's CSRF token and is refused (403, nothing
changed) without it or for a read-only operator. Actions that cannot be undone are confirmed
first: a GET shows what will happen and the form that does it; the POST shows what it did.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contracts.errors import AgentUnavailable, InvalidInput
from contracts.ingress import PairingCodeRequest, new_pairing_code
from contracts.models import SetWorkerStatusRequest
from ingress.console.auth import LOGIN_COOKIE, SESSION_COOKIE, Operator, check_action, check_csrf, login_nonce_matches
from ingress.console.site import PREFIX, Site, safe_next

log = structlog.get_logger("ingress.console")
Csrf = Annotated[str | None, Form()]


class Actions:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.store = site.store

    def confirm(
        self, request: Request, operator: Operator, title: str, detail: str, action: str, **fields: str
    ) -> HTMLResponse:
        back = "/" + action.strip("/").split("/")[0]
        context = {"title": title, "detail": detail, "action": action, "fields": fields, "back": back}
        return self.site.page(request, "confirm.html", context, operator=operator)

    def done(self, request: Request, operator: Operator, title: str, **context: Any) -> HTMLResponse:
        # result.html shows whichever of these the action had (the environment's undefined is strict).
        shown = {"error": None, "redriven": [], "code": None, "worker": None, **context}
        return self.site.page(request, "result.html", {"title": title, **shown}, operator=operator)

    async def acting(self, request: Request, csrf: str | None) -> Operator:
        operator = await self.site.operator(request)
        check_action(operator, csrf)
        return operator

    async def may_act(self, request: Request) -> Operator:
        """A confirmation page is the first step of an action: read-only operators are told at once."""
        operator = await self.site.operator(request)
        check_action(operator, operator.csrf)
        return operator

    # ------------------------------------------------------------------ sign in, sign out

    async def login(
        self,
        request: Request,
        token: Annotated[str, Form()] = "",
        nonce: Annotated[str | None, Form()] = None,
        next: Annotated[str, Form()] = PREFIX,
    ) -> Response:
        if self.site.config.auth != "token":
            return self.site.login_page(request, error="This console signs in through its proxy, not with a token.")
        if not login_nonce_matches(request, nonce):
            return self.site.login_page(
                request, error="The sign-in form expired. Try again.", status=403, next_path=next
            )
        opened = await self.site.signin.login(token)
        if opened is None:
            log.warning("console.login_refused")
            return self.site.login_page(request, error="That operator token is not valid.", next_path=next)
        session_id, session = opened
        log.info("console.login", operator=session.operator, role=session.role)
        response = RedirectResponse(safe_next(next), status_code=303)
        self.site.signin.session_cookie(response, request, session_id)
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request, csrf: Csrf = None) -> Response:
        operator = await self.site.operator(request)
        check_csrf(operator, csrf)  # read-only operators may sign out too
        await self.site.signin.logout(operator)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    # ------------------------------------------------------------------ dead letters

    async def redrive_confirm(self, request: Request, message: str | None = None) -> HTMLResponse:
        operator = await self.may_act(request)
        if message is None:
            count = (await self.store.queue_stats()).dead_letters
            detail = f"Every dead letter ({count}) goes back to its place in its conversation with fresh attempts."
            return self.confirm(
                request, operator, "Redrive every dead letter?", detail, "/dead-letters/redrive", all="1"
            )
        found = await self.store.get_message(message)
        if found is None or found.status != "dead_letter":
            return self.done(
                request, operator, "Not a dead letter", error=f"{message} is not a dead letter (any more)."
            )
        detail = (
            f"{message} in {found.conversation_id} goes back to its place in its conversation "
            f"with fresh attempts (it had {found.attempts} of {found.max_attempts})."
        )
        return self.confirm(
            request, operator, "Redrive this dead letter?", detail, "/dead-letters/redrive", message=message
        )

    async def redrive(
        self,
        request: Request,
        csrf: Csrf = None,
        message: Annotated[str | None, Form()] = None,
        all: Annotated[str | None, Form()] = None,
    ) -> HTMLResponse:
        operator = await self.acting(request, csrf)
        if message is None and all != "1":
            raise InvalidInput("message", "name the dead letter to redrive, or redrive all")
        result = await self.store.redrive(None if all == "1" else message)
        log.info("console.redrive", operator=operator.name, redriven=len(result.redriven))
        records = [r for r in [await self.store.get_message(m) for m in result.redriven[:200]] if r is not None]
        return self.done(request, operator, f"Redriven {len(result.redriven)} message(s)", redriven=records)

    # ------------------------------------------------------------------ workers

    async def drain_confirm(self, request: Request, worker: str) -> HTMLResponse:
        operator = await self.may_act(request)
        detail = (
            f"{worker} stops claiming, finishes the message it holds, and exits; the autoscaler then "
            "removes its machine. A worker cannot be undrained."
        )
        return self.confirm(request, operator, "Drain this worker?", detail, "/workers/drain", worker=worker)

    async def drain(self, request: Request, worker: Annotated[str, Form()], csrf: Csrf = None) -> HTMLResponse:
        operator = await self.acting(request, csrf)
        reason = f"drained by {operator.name} from the console"
        changed = await self.store.fleet_set_worker_status(
            SetWorkerStatusRequest(worker_id=worker, status="draining", reason=reason)
        )
        log.info("console.drain", operator=operator.name, worker_id=worker, changed=changed)
        if not changed:
            return self.done(request, operator, "Not drained", error=f"{worker} is unknown, or already past draining.")
        return self.done(request, operator, f"{worker} is draining", worker=worker)

    # ------------------------------------------------------------------ agents

    async def set_enabled(
        self,
        request: Request,
        agent: Annotated[str, Form()],
        enabled: Annotated[str, Form()],
        csrf: Csrf = None,
    ) -> Response:
        operator = await self.acting(request, csrf)
        profile = await self.store.get_agent_profile(agent)
        if profile is None:
            return self.done(request, operator, "No such agent", error=f"There is no agent {agent}.")
        await self.store.upsert_agent_profile(profile.model_copy(update={"enabled": enabled == "1"}))
        log.info("console.agent", operator=operator.name, agent_key=agent, enabled=enabled == "1")
        return RedirectResponse(f"{PREFIX}/agents", status_code=303)

    # ------------------------------------------------------------------ pairing and bindings

    async def new_code(
        self,
        request: Request,
        agent: Annotated[str, Form()],
        ttl_min: Annotated[int, Form()] = 15,
        csrf: Csrf = None,
    ) -> HTMLResponse:
        operator = await self.acting(request, csrf)
        try:
            code = await self.store.create_pairing_code(
                PairingCodeRequest(code=new_pairing_code(), agent_key=agent, ttl_ms=ttl_min * 60_000)
            )
        except AgentUnavailable as exc:
            return self.done(request, operator, "No pairing code", error=str(exc))
        log.info("console.pairing_code", operator=operator.name, agent_key=agent)
        return self.done(request, operator, "Pairing code created", code=code)

    async def revoke_binding_confirm(self, request: Request, binding: str) -> HTMLResponse:
        operator = await self.may_act(request)
        detail = f"The user bound by {binding} goes back to being unbound: their next message is not routed by it."
        return self.confirm(
            request, operator, "Revoke this binding?", detail, "/pairing/bindings/revoke", binding=binding
        )

    async def revoke_binding(
        self, request: Request, binding: Annotated[str, Form()], csrf: Csrf = None
    ) -> HTMLResponse:
        operator = await self.acting(request, csrf)
        revoked = await self.store.revoke_binding(binding)
        log.info("console.revoke_binding", operator=operator.name, binding_id=binding, revoked=revoked)
        title = f"Binding {binding} revoked" if revoked else "Nothing revoked"
        return self.done(
            request, operator, title, error=None if revoked else f"{binding} is unknown or already revoked."
        )

    # ------------------------------------------------------------------ tokens

    async def revoke_token_confirm(self, request: Request, kind: str, token: str) -> HTMLResponse:
        operator = await self.may_act(request)
        who = "The app using it can no longer call the app API." if kind == "app" else "Its sessions end at once."
        detail = f"Token {token} stops working. {who}"
        return self.confirm(request, operator, "Revoke this token?", detail, "/tokens/revoke", kind=kind, token=token)

    async def revoke_token(
        self,
        request: Request,
        kind: Annotated[str, Form()],
        token: Annotated[str, Form()],
        csrf: Csrf = None,
    ) -> HTMLResponse:
        operator = await self.acting(request, csrf)
        if kind == "app":
            revoked = await self.store.revoke_app_token(token)
        elif kind == "operator":
            revoked = await self.store.revoke_operator_token(token)
        else:
            raise InvalidInput("kind", "must be app or operator")
        log.info("console.revoke_token", operator=operator.name, kind=kind, token_id=token, revoked=revoked)
        title = f"Token {token} revoked" if revoked else "Nothing revoked"
        return self.done(request, operator, title, error=None if revoked else f"{token} is unknown or already revoked.")


def build_actions(site: Site) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    handlers = Actions(site)
    router.add_api_route("/login", handlers.login, methods=["POST"])
    router.add_api_route("/logout", handlers.logout, methods=["POST"])
    router.add_api_route("/dead-letters/redrive", handlers.redrive_confirm, methods=["GET"])
    router.add_api_route("/dead-letters/redrive", handlers.redrive, methods=["POST"])
    router.add_api_route("/workers/drain", handlers.drain_confirm, methods=["GET"])
    router.add_api_route("/workers/drain", handlers.drain, methods=["POST"])
    router.add_api_route("/agents/enabled", handlers.set_enabled, methods=["POST"])
    router.add_api_route("/pairing/codes", handlers.new_code, methods=["POST"])
    router.add_api_route("/pairing/bindings/revoke", handlers.revoke_binding_confirm, methods=["GET"])
    router.add_api_route("/pairing/bindings/revoke", handlers.revoke_binding, methods=["POST"])
    router.add_api_route("/tokens/revoke", handlers.revoke_token_confirm, methods=["GET"])
    router.add_api_route("/tokens/revoke", handlers.revoke_token, methods=["POST"])
    return router
