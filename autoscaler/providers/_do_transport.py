"""python-digitalocean, made safe to call from the autoscaler.

The library (1.17.0, unmaintained since 2021) builds request bodies and pages through lists
well, but its transport has three gaps that matter here (fleet-apis §3.6):

1. no timeout unless the *process* env var ``PYTHON_DIGITALOCEAN_REQUEST_TIMEOUT_SEC`` is set;
2. an HTTP error status is lost: non-404 errors become ``DataReadError(message)`` (or an
   ``IndexError`` when the body has no ``message``), so 429 cannot be told from 422;
3. POST and PATCH go through module-level ``requests.post``, bypassing the object's session,
   so a session hook or adapter never sees a create.

Every library call funnels through one private method, ``BaseAPI.__perform_request``
(name-mangled to ``_BaseAPI__perform_request``), which ``get_data`` and the pagination helper
call. ``FactoryTransport`` overrides that one method: it sends through our ``requests.Session``
with our timeout, and raises ``HttpStatusError`` with the status and headers before the library
can lose them. The library's ``get_data`` then only ever sees successful responses.

The override is tied to the pinned 1.17.0; ``check_library`` refuses to run if the seam moved,
rather than silently falling back to a transport with no timeout.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urljoin

import digitalocean
import requests
import urllib3

__all__ = ["FactoryDroplet", "FactoryManager", "HttpStatusError", "check_library", "never_sent"]

_SEAM = "_BaseAPI__perform_request"


def check_library() -> None:
    if not callable(getattr(digitalocean.baseapi.BaseAPI, _SEAM, None)):
        raise RuntimeError(
            "python-digitalocean no longer has BaseAPI.__perform_request; the DigitalOcean provider "
            "needs python-digitalocean==1.17.0"
        )


class HttpStatusError(Exception):
    """A non-2xx answer from the API, with what the library would have thrown away."""

    def __init__(self, status: int, headers: dict[str, str], body: Any, text: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body
        self.text = text


class FactoryTransport:
    """Mixin for library classes: our session, our timeout, errors that keep their status.

    Set by keyword at construction (the library's ``BaseAPI.__init__`` copies every keyword onto
    the object): ``token``, ``end_point``, ``_session`` and ``factory_timeout_s``.
    """

    _session: requests.Session
    end_point: str
    factory_timeout_s: float
    # The most recent successful response, for callers that need more than the library keeps.
    factory_last_response: requests.Response | None = None

    def get_timeout(self) -> float:
        # The library's own hook reads the process environment; ours comes from config.
        return self.factory_timeout_s

    # The library's mangled private name is the seam (see the module docstring).
    def _BaseAPI__perform_request(
        self, url: str, type: str = "GET", params: dict[str, Any] | None = None
    ) -> requests.Response:
        params = params or {}
        token: str = getattr(self, "token", "")
        if not token:
            raise digitalocean.TokenError("No token provided")
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "factory-autoscaler",
        }
        payload: dict[str, Any] = {"params": params} if type == "GET" else {"data": json.dumps(params)}
        response = self._session.request(
            type, urljoin(self.end_point, url), headers=headers, timeout=self.get_timeout(), **payload
        )
        if response.status_code >= 400:
            raise _status_error(response)
        self.factory_last_response = response
        return response


def _status_error(response: requests.Response) -> HttpStatusError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return HttpStatusError(response.status_code, dict(response.headers), body, response.text[:500])


# The library's classes are untyped (Any to mypy): subclassing them needs the ignore.
class FactoryManager(FactoryTransport, digitalocean.Manager):  # type: ignore[misc]
    pass


class FactoryDroplet(FactoryTransport, digitalocean.Droplet):  # type: ignore[misc]
    pass


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (so repeating it is safe)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason: object = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return isinstance(reason, urllib3.exceptions.NewConnectionError)
