"""The operator console: see and steer the fleet in a browser, under ``/console`` of ``factory serve``.

Server-rendered pages (Jinja2, autoescaped, every value's control characters shown), live parts
refreshed by htmx (vendored in ``static/``: no CDN, no build step), charts drawn server-side as
inline SVG. Modules: ``config`` (what the composition root hands in), ``auth`` (operator tokens or a
trusted proxy header, the session cookie, CSRF, roles), ``text`` (stored text made inert),
``figures`` (claims/s and enqueue→reply latency, purely from settled messages), ``site`` (the
templates, headers and shared answers), ``pages`` (what operators look at) and ``actions`` (what
they change: redrive, drain, the safe repairs). It works on any store through the roles in
``contracts.roles``; a reconcile dry run is injected (``PlanSource``), never imported.
"""

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ingress.console.actions import build_actions
from ingress.console.config import ConsoleConfig
from ingress.console.pages import build_pages
from ingress.console.site import HERE, PREFIX, ConsoleStores, PlanSource, Site

__all__ = ["ConsoleConfig", "ConsoleStores", "PlanSource", "mount_console"]


def mount_console(app: FastAPI, store: ConsoleStores, config: ConsoleConfig, plans: PlanSource | None) -> None:
    """Serve the console under /console of ``app``."""
    site = Site(store, config, plans)
    site.install(app)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(build_pages(site))
    app.include_router(build_actions(site))
