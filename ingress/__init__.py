"""``factory serve``: the front door. One ASGI app (FastAPI on uvicorn) in front of the store.

Modules: ``config`` (what the composition root hands in), ``telegram`` (Bot API update shapes and
the pure reading of an update), ``webhook`` (the Telegram routes), ``batcher`` (group commit of
concurrent updates), ``app_api`` (the app API and its reply stream), ``configure`` (``factory
telegram configure``: setWebhook and getWebhookInfo), ``app`` (the application: health, lifespan,
error mapping), ``server`` (uvicorn under anyio, with graceful shutdown) and ``console/`` (the
operator console under ``/console``). ``ingress`` imports ``contracts`` only.
"""

from ingress.app import FrontDoorStore, ServedStore, create_app
from ingress.config import IngressConfig
from ingress.console import ConsoleConfig, PlanSource
from ingress.server import IngressServer

__all__ = [
    "ConsoleConfig",
    "FrontDoorStore",
    "IngressConfig",
    "IngressServer",
    "PlanSource",
    "ServedStore",
    "create_app",
]
