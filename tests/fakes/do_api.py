"""A fake DigitalOcean API (droplets) on loopback, as documented.

Behaviour (reference/fleet-apis.md §3): ``Authorization: Bearer <token>`` else 401; every
response carries ``ratelimit-limit/-remaining/-reset``; create is 202 with the droplet ``new``
(``active`` ``boot_delay_s`` later) and a create action link, validates name/size/image/tags and
the account's droplet limit (422); list filters on ``tag_name`` and pages with absolute
``links.pages.next`` URLs (page size capped by ``max_page_size`` so tests can force paging);
delete is 204, then 404; ``shutdown``/``power_off`` actions turn a droplet ``off`` (422 when it
already is), ``power_on`` turns an ``off`` one ``active`` again (422 when it already is; it still
bills while off); errors are ``{"id": ..., "message": ..., "request_id": ...}``. User data is kept
(``user_data_of``) but, as on DigitalOcean, never shown in responses.

Faults (see ``tests.fakes._server``) are keyed by endpoint: ``create``, ``list``, ``get``,
``delete``, ``action``. ``rate_limit_next`` answers 429 with ``retry-after`` and/or a
``ratelimit-reset``. ``list_lag(n)`` hides new droplets from the next ``n`` lists.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from tests.fakes._server import FaultyServer, Request, Response

_DROPLETS = re.compile(r"^/v2/droplets(?:/(?P<id>\d+)(?:/(?P<actions>actions))?)?$")
_TAG = re.compile(r"^[A-Za-z0-9_\-:]{1,255}$")
_NAME = re.compile(r"^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$")
_RATE_LIMIT = 5000


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(kind: str, message: str) -> dict[str, str]:
    return {"id": kind, "message": message, "request_id": secrets.token_hex(8)}


class FakeDigitalOceanApi(FaultyServer):
    def __init__(
        self,
        *,
        token: str = "do-test-token",
        droplet_limit: int = 25,
        max_page_size: int = 200,
        boot_delay_s: float = 0.0,
    ) -> None:
        super().__init__()
        self.token = token
        self.droplet_limit = droplet_limit
        self.max_page_size = max_page_size
        self.boot_delay_s = boot_delay_s
        self.droplets: dict[int, dict[str, Any]] = {}
        self.create_bodies: list[dict[str, Any]] = []
        self.actions: list[tuple[int, str]] = []
        self._remaining = _RATE_LIMIT
        self._lag = 0
        self._ids = itertools.count(3164444)
        self._action_ids = itertools.count(7515)

    # -- test controls --------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2/"

    def rate_limit_next(
        self, endpoint: str, *, times: int = 1, retry_after: int | None = None, reset_in_s: int | None = None
    ) -> None:
        headers = {"ratelimit-remaining": "0"}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if reset_in_s is not None:
            headers["ratelimit-reset"] = str(int(time.time()) + reset_in_s)
        self.fail_next(
            endpoint, 429, times=times, body=_error("too_many_requests", "API Rate limit exceeded."), headers=headers
        )

    def list_lag(self, lists: int) -> None:
        with self.lock:
            self._lag = lists

    def add_droplet(self, *, tags: list[str], status: str = "active", name: str = "someone-else") -> int:
        with self.lock:
            droplet = self._new_droplet({"name": name, "size": "s-1vcpu-1gb", "image": "ubuntu-24-04-x64"}, tags)
            droplet["status"] = status
            return int(droplet["id"])

    def user_data_of(self, droplet_id: int) -> str:
        with self.lock:
            return str(self.droplets[droplet_id]["_user_data"])

    def live(self) -> list[dict[str, Any]]:
        with self.lock:
            return [d for d in self.droplets.values() if not d["_deleted"]]

    # -- FaultyServer ---------------------------------------------------------------------------

    def endpoint(self, method: str, path: str) -> str | None:
        match = _DROPLETS.match(path)
        if match is None:
            return None
        if match.group("id") is None:
            return {"GET": "list", "POST": "create"}.get(method)
        if match.group("actions"):
            return "action" if method == "POST" else None
        return {"GET": "get", "DELETE": "delete"}.get(method)

    def authorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") == f"Bearer {self.token}":
            return None
        return Response(401, _error("unauthorized", "Unable to authenticate you"))

    def not_found(self, request: Request) -> Response:
        return Response(404, _error("not_found", "The resource you were accessing could not be found."))

    def server_error(self, status: int) -> Any:
        return _error("server_error", "Server was unable to give you a response.")

    def extra_headers(self) -> dict[str, str]:
        with self.lock:
            self._remaining = max(0, self._remaining - 1)
            remaining = self._remaining
        return {
            "ratelimit-limit": str(_RATE_LIMIT),
            "ratelimit-remaining": str(remaining),
            "ratelimit-reset": str(int(time.time()) + 60),
        }

    def route(self, endpoint: str, request: Request) -> Response:
        self._advance()
        if endpoint == "create":
            return self._create(request)
        if endpoint == "list":
            return self._list(request)
        match = _DROPLETS.match(request.path)
        assert match is not None
        droplet = self.droplets.get(int(match.group("id")))
        if droplet is None or droplet["_deleted"]:
            return self.not_found(request)
        return {"get": self._get, "delete": self._delete, "action": self._action}[endpoint](droplet, request)

    # -- endpoints (called under the lock) ------------------------------------------------------

    def _create(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        self.create_bodies.append(body)
        for required in ("name", "size", "image"):
            if not body.get(required):
                return Response(422, _error("unprocessable_entity", f"{required} is required"))
        if not _NAME.match(str(body["name"])):
            return Response(422, _error("unprocessable_entity", "Name is invalid"))
        tags = body.get("tags") or []
        bad = [tag for tag in tags if not _TAG.match(str(tag))]
        if bad:
            return Response(422, _error("unprocessable_entity", f"tag {bad[0]!r} is invalid"))
        if len(str(body.get("user_data") or "").encode()) > 64 * 1024:
            return Response(422, _error("unprocessable_entity", "user_data is too large"))
        if len(self.live()) >= self.droplet_limit:
            return Response(
                422,
                _error("unprocessable_entity", "creating this/these droplet(s) will exceed your droplet limit"),
            )
        droplet = self._new_droplet(body, list(tags))
        droplet["_hidden_lists"] = self._lag
        action = {"id": next(self._action_ids), "rel": "create", "href": f"{self.api_url}actions/1"}
        return Response(202, {"droplet": self._public(droplet), "links": {"actions": [action]}})

    def _list(self, request: Request) -> Response:
        tag = request.param("tag_name")
        page = max(1, int(request.param("page") or 1))
        per_page = min(self.max_page_size, max(1, int(request.param("per_page") or 20)))
        matching = []
        for droplet in self.droplets.values():
            if droplet["_deleted"] or (tag is not None and tag not in droplet["tags"]):
                continue
            if droplet["_hidden_lists"] > 0:
                droplet["_hidden_lists"] -= 1
                continue
            matching.append(droplet)
        start = (page - 1) * per_page
        shown = [self._public(d) for d in matching[start : start + per_page]]
        pages: dict[str, str] = {}
        if start + per_page < len(matching):
            query = {"page": page + 1, "per_page": per_page, **({"tag_name": tag} if tag else {})}
            pages["next"] = f"{self.api_url}droplets?{urlencode(query)}"
        return Response(200, {"droplets": shown, "links": {"pages": pages}, "meta": {"total": len(matching)}})

    def _get(self, droplet: dict[str, Any], request: Request) -> Response:
        return Response(200, {"droplet": self._public(droplet)})

    def _delete(self, droplet: dict[str, Any], request: Request) -> Response:
        droplet["_deleted"] = True
        return Response(204)

    def _action(self, droplet: dict[str, Any], request: Request) -> Response:
        kind = (request.body or {}).get("type") if isinstance(request.body, dict) else None
        if kind not in ("shutdown", "power_off", "power_on"):
            return Response(422, _error("unprocessable_entity", f"action type {kind!r} is not supported"))
        if kind in ("shutdown", "power_off"):
            if droplet["status"] == "off":
                return Response(422, _error("unprocessable_entity", "Droplet is already powered off."))
            droplet["status"] = "off"
        else:
            if droplet["status"] == "active":
                return Response(422, _error("unprocessable_entity", "Droplet is already powered on."))
            droplet["status"] = "active"
        self.actions.append((int(droplet["id"]), str(kind)))  # accepted actions only
        action = {
            "id": next(self._action_ids),
            "status": "in-progress",
            "type": kind,
            "started_at": _now_iso(),
            "completed_at": None,
            "resource_id": droplet["id"],
            "resource_type": "droplet",
            "region_slug": droplet["region"]["slug"],
        }
        return Response(201, {"action": action})

    # -- helpers --------------------------------------------------------------------------------

    def _new_droplet(self, body: dict[str, Any], tags: list[str]) -> dict[str, Any]:
        droplet_id = next(self._ids)
        region = str(body.get("region") or "nyc3")
        droplet: dict[str, Any] = {
            "id": droplet_id,
            "name": body["name"],
            "memory": 2048,
            "vcpus": 1,
            "disk": 50,
            "locked": False,
            "status": "new",
            "kernel": None,
            "created_at": _now_iso(),
            "features": ["droplet_agent"],
            "backup_ids": [],
            "snapshot_ids": [],
            "image": {"slug": body.get("image"), "distribution": "Ubuntu"},
            "volume_ids": [],
            "size": {"slug": body.get("size")},
            "size_slug": body.get("size"),
            "networks": {"v4": [], "v6": []},
            "region": {"slug": region, "name": region.upper(), "available": True},
            "tags": tags,
            "vpc_uuid": body.get("vpc_uuid"),
            "_user_data": body.get("user_data") or "",
            "_deleted": False,
            "_hidden_lists": 0,
            "_born": time.monotonic(),
        }
        self.droplets[droplet_id] = droplet
        return droplet

    def _advance(self) -> None:
        now = time.monotonic()
        for droplet in self.droplets.values():
            if droplet["status"] == "new" and now - droplet["_born"] >= self.boot_delay_s:
                droplet["status"] = "active"

    @staticmethod
    def _public(droplet: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in droplet.items() if not k.startswith("_")}
