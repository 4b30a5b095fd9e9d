"""The console's pages: what operators look at. Nothing here changes the store (see ``actions``).

Live parts (the overview's figures, a conversation's messages, the workers) are fragments that
htmx fetches again every ``refresh_s``; each page also renders them in place, so it reads fine
without JavaScript.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contracts.errors import FactoryError
from contracts.models import WorkerRecord
from ingress.console.auth import NotSignedIn
from ingress.console.figures import chart, throughput
from ingress.console.site import PREFIX, Site

WORKER_ORDER = {"active": 0, "draining": 1, "stopping": 2, "stopped": 3}


class Pages:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.store = site.store

    async def login(self, request: Request) -> Response:
        try:
            await self.site.operator(request)
        except NotSignedIn:
            return self.site.login_page(request, status=200)
        return RedirectResponse(PREFIX, status_code=303)

    # ------------------------------------------------------------------ overview

    async def overview_context(self) -> dict[str, Any]:
        stats = await self.store.queue_stats()
        now = await self.store.now_ms()
        window = await self.store.settled_since(now - self.site.config.window_ms, self.site.config.settled_limit)
        figures = throughput(window, self.site.config.bucket_ms)
        return {"stats": stats, "figures": figures, "chart": chart(figures), "now": now}

    async def overview(self, request: Request) -> HTMLResponse:
        operator = await self.site.operator(request)
        return self.site.page(request, "overview.html", await self.overview_context(), operator=operator)

    async def overview_fragment(self, request: Request) -> HTMLResponse:
        operator = await self.site.operator(request)
        return self.site.page(request, "_overview.html", await self.overview_context(), operator=operator)

    # ------------------------------------------------------------------ conversations

    async def conversations(self, request: Request, q: str = "") -> HTMLResponse:
        operator = await self.site.operator(request)
        found = await self.store.search_conversations(q, 100)
        context = {"q": q, "found": found}
        return self.site.page(request, "conversations.html", context, operator=operator)

    async def conversation_context(self, conversation_id: str) -> dict[str, Any]:
        conversation = await self.store.get_conversation(conversation_id, 200)
        records = await self.store.conversation_records(conversation_id, 200)
        return {
            "conversation_id": conversation_id,
            "conversation": conversation,
            "records": records,
            "now": await self.store.now_ms(),
        }

    async def conversation(self, request: Request, conversation_id: str) -> HTMLResponse:
        operator = await self.site.operator(request)
        context = await self.conversation_context(conversation_id)
        status = 200 if context["conversation"] is not None else 404
        return self.site.page(request, "conversation.html", context, operator=operator, status=status)

    async def conversation_fragment(self, request: Request, id: str) -> HTMLResponse:
        operator = await self.site.operator(request)
        return self.site.page(request, "_conversation.html", await self.conversation_context(id), operator=operator)

    # ------------------------------------------------------------------ dead letters

    async def dead_letters(self, request: Request) -> HTMLResponse:
        operator = await self.site.operator(request)
        rows = await self.store.list_dead_letters(200)
        return self.site.page(request, "dead_letters.html", {"rows": rows}, operator=operator)

    # ------------------------------------------------------------------ workers and machines

    async def workers_context(self, show_stopped: bool) -> dict[str, Any]:
        workers = sorted(await self.store.list_workers(), key=_worker_order)
        shown = [w for w in workers if show_stopped or w.status != "stopped"]
        return {
            "workers": shown,
            "stopped_hidden": len(workers) - len(shown),
            "show_stopped": show_stopped,
            "now": await self.store.now_ms(),
        }

    async def workers(self, request: Request, stopped: bool = False) -> HTMLResponse:
        operator = await self.site.operator(request)
        context = {
            **await self.workers_context(stopped),
            "last_plan": await self.store.last_reconcile(),
            "can_plan": self.site.plans is not None,
        }
        return self.site.page(request, "workers.html", context, operator=operator)

    async def workers_fragment(self, request: Request, stopped: bool = False) -> HTMLResponse:
        operator = await self.site.operator(request)
        return self.site.page(request, "_workers.html", await self.workers_context(stopped), operator=operator)

    async def dry_run(self, request: Request) -> HTMLResponse:
        """``factory reconcile --dry-run`` on demand: it reads the store and the provider, applies nothing."""
        operator = await self.site.operator(request)
        plan, error = None, None
        if self.site.plans is None:
            error = "no provider is configured for this server, so it cannot plan (see FACTORY_PROVIDER)"
        else:
            try:
                with anyio.fail_after(60):
                    plan = await self.site.plans.dry_run()
            except (FactoryError, TimeoutError) as exc:
                error = str(exc) or "the dry run took longer than 60 s"
        fragment = bool(request.headers.get("hx-request"))
        context = {"plan": plan, "error": error, "title": "Dry-run plan"}
        return self.site.page(request, "_plan.html" if fragment else "plan.html", context, operator=operator)

    # ------------------------------------------------------------------ agents, access, push

    async def agents(self, request: Request) -> HTMLResponse:
        operator = await self.site.operator(request)
        context = {"agents": await self.store.list_agent_profiles(), "secrets": await self.store.secret_status()}
        return self.site.page(request, "agents.html", context, operator=operator)

    async def pairing(self, request: Request, revoked: bool = False) -> HTMLResponse:
        operator = await self.site.operator(request)
        context = {
            "codes": await self.store.list_pairing_codes(100),
            "bindings": await self.store.list_bindings(include_revoked=revoked),
            "agents": [a.agent_key for a in await self.store.list_agent_profiles() if a.enabled],
            "show_revoked": revoked,
        }
        return self.site.page(request, "pairing.html", context, operator=operator)

    async def push(self, request: Request) -> HTMLResponse:
        operator = await self.site.operator(request)
        context = {
            "jobs": await self.store.push_jobs(),
            "templates": await self.store.push_templates(),
            "broadcasts": await self.store.broadcasts(50),
        }
        return self.site.page(request, "push.html", context, operator=operator)

    async def tokens(self, request: Request) -> HTMLResponse:
        operator = await self.site.operator(request)
        context = {"apps": await self.store.list_app_tokens(), "operators": await self.store.list_operator_tokens()}
        return self.site.page(request, "tokens.html", context, operator=operator)


def build_pages(site: Site) -> APIRouter:
    router = APIRouter(prefix=PREFIX, include_in_schema=False)
    handlers = Pages(site)
    router.add_api_route("/login", handlers.login, methods=["GET"])
    router.add_api_route("", handlers.overview, methods=["GET"])
    router.add_api_route("/fragments/overview", handlers.overview_fragment, methods=["GET"])
    router.add_api_route("/conversations", handlers.conversations, methods=["GET"])
    router.add_api_route("/conversations/{conversation_id:path}", handlers.conversation, methods=["GET"])
    router.add_api_route("/fragments/conversation", handlers.conversation_fragment, methods=["GET"])
    router.add_api_route("/dead-letters", handlers.dead_letters, methods=["GET"])
    router.add_api_route("/workers", handlers.workers, methods=["GET"])
    router.add_api_route("/fragments/workers", handlers.workers_fragment, methods=["GET"])
    router.add_api_route("/workers/plan", handlers.dry_run, methods=["GET"])
    router.add_api_route("/agents", handlers.agents, methods=["GET"])
    router.add_api_route("/pairing", handlers.pairing, methods=["GET"])
    router.add_api_route("/push", handlers.push, methods=["GET"])
    router.add_api_route("/tokens", handlers.tokens, methods=["GET"])
    return router


def _worker_order(worker: WorkerRecord) -> tuple[int, int, str]:
    return (WORKER_ORDER[worker.status], -worker.registered_at, worker.worker_id)
