"""A fake Fly Machines API on loopback: the endpoints the Fly provider uses, as documented.

Behaviour (reference/fleet-apis.md §1): ``Authorization: Bearer <token>`` or ``FlyV1 <token>``
else 401; machine names unique per app (422, status ``name_taken``); create answers ``created``
and the machine is ``started`` ``boot_delay_s`` later (with ``skip_launch`` it stays ``created``,
not booted, until started); start boots a ``created`` or ``stopped`` machine (a started one answers
200 with its ``previous_state``); suspend freezes a started machine (else 412) and a start
resumes it with the same instance (its processes kept); ``exit_worker`` plays the machine's process exiting: with
``auto_destroy`` the machine is destroyed, else it stops; list filters on ``metadata.<key>=<value>``
and hides destroyed machines; stop takes ``{signal, timeout}``; delete needs ``force=true`` for a
started machine (else 412) and is 404 once gone; wait answers 200 or 408; errors are
``{"error": ..., "status"?: ...}``; responses carry fields the provider does not read (events,
services with ``autostop`` as bool or string, image_ref...) to prove tolerant parsing.

App secrets: ``POST /v1/apps/{app}/secrets/{name}`` with ``{"value"}`` sets one (each set bumps the
app's secrets version, which the answer carries); Fly injects them into every machine's environment
at boot (``machine_env`` shows what a machine would see); a create whose ``min_secrets_version`` is
above the app's version is refused with 412.

Update (``POST /v1/apps/{app}/machines/{id}``) replaces a machine's whole config (no partial
updates; ``name`` and ``region`` are immutable, so a body that names others is refused with 422)
and gives it a new instance id; with ``skip_launch`` a stopped machine stays stopped, else it
boots, and a started one reboots. ``min_secrets_version`` is honoured as on create.

Faults (see ``tests.fakes._server``) are keyed by endpoint: ``create``, ``list``, ``get``,
``update``, ``start``, ``stop``, ``suspend``, ``delete``, ``wait``, ``set_secret``. ``list_lag(n)``
hides machines created afterwards from the next ``n`` list calls, as Fly's eventually consistent
list does.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from tests.fakes._server import FaultyServer, Request, Response

_MACHINES = re.compile(r"^/v1/apps/(?P<app>[^/]+)/machines(?:/(?P<id>[^/]+)(?:/(?P<verb>start|stop|suspend|wait))?)?$")
_SECRET = re.compile(r"^/v1/apps/(?P<app>[^/]+)/secrets/(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeFlyApi(FaultyServer):
    def __init__(self, *, token: str = "fly-test-token", app: str = "factory-workers", boot_delay_s: float = 0.0):
        super().__init__()
        self.token = token
        self.app = app
        self.boot_delay_s = boot_delay_s
        self.machines: dict[str, dict[str, Any]] = {}
        self.auth_headers: list[str] = []
        self.create_bodies: list[Any] = []
        self.update_bodies: list[Any] = []
        self.stop_bodies: list[Any] = []
        self.delete_queries: list[dict[str, list[str]]] = []
        self.app_secrets: dict[str, str] = {}
        self.secrets_version = 0
        self._lag = 0
        self._ids = itertools.count(1)

    # -- test controls --------------------------------------------------------------------------

    def list_lag(self, lists: int) -> None:
        """Machines created from now on stay out of the next ``lists`` list responses."""
        with self.lock:
            self._lag = lists

    def add_machine(
        self,
        *,
        metadata: dict[str, str],
        state: str = "started",
        host_status: str = "ok",
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A machine made outside the provider (someone else's, or one on an unreachable host)."""
        with self.lock:
            machine = self._new_machine(f"other-{next(self._ids)}", {"image": "other:1", "metadata": metadata})
            machine["state"] = state
            machine["host_status"] = host_status
            machine.update(extra or {})
            return str(machine["id"])

    def machine_env(self, machine_id: str) -> dict[str, str]:
        """What the machine's processes see: its config env, then the app's secrets (as Fly injects them)."""
        with self.lock:
            machine = self.machines[machine_id]
            return {**(machine["config"].get("env") or {}), **machine["_secrets"]}

    def exit_worker(self, machine_id: str) -> None:
        """The machine's main process exits (an idle or drained worker): destroyed with auto_destroy, else stopped."""
        with self.lock:
            machine = self.machines[machine_id]
            machine["state"] = "destroyed" if machine["config"].get("auto_destroy") else "stopped"

    def live(self) -> list[dict[str, Any]]:
        with self.lock:
            return [m for m in self.machines.values() if m["state"] != "destroyed"]

    # -- FaultyServer ---------------------------------------------------------------------------

    def endpoint(self, method: str, path: str) -> str | None:
        if _SECRET.match(path):
            return "set_secret" if method == "POST" else None
        match = _MACHINES.match(path)
        if match is None:
            return None
        machine_id, verb = match.group("id"), match.group("verb")
        if machine_id is None:
            return {"GET": "list", "POST": "create"}.get(method)
        if verb is not None:
            return {
                ("POST", "start"): "start",
                ("POST", "stop"): "stop",
                ("POST", "suspend"): "suspend",
                ("GET", "wait"): "wait",
            }.get((method, verb))
        return {"GET": "get", "POST": "update", "DELETE": "delete"}.get(method)

    def authorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        with self.lock:
            self.auth_headers.append(header)
        if header in (f"Bearer {self.token}", f"FlyV1 {self.token}"):
            return None
        return Response(401, {"error": "Authenticate: token validation error"})

    def server_error(self, status: int) -> Any:
        return {"error": "upstream flyd: deadline exceeded" if status == 504 else "internal server error"}

    def extra_headers(self) -> dict[str, str]:
        return {"fly-request-id": secrets.token_hex(8)}

    def route(self, endpoint: str, request: Request) -> Response:
        if endpoint == "set_secret":
            return self._set_secret(request)
        match = _MACHINES.match(request.path)
        assert match is not None
        if match.group("app") != self.app:
            return Response(404, {"error": "app not found"})
        self._advance()
        machine_id = match.group("id")
        if endpoint == "create":
            return self._create(request)
        if endpoint == "list":
            return self._list(request)
        machine = self.machines.get(machine_id or "")
        if machine is None or machine["state"] == "destroyed":
            return Response(404, {"error": "machine not found"})
        handlers = {
            "get": self._get,
            "update": self._update,
            "start": self._start,
            "stop": self._stop,
            "suspend": self._suspend,
            "delete": self._delete,
        }
        return {**handlers, "wait": self._wait}[endpoint](machine, request)

    # -- endpoints (called under the lock) ------------------------------------------------------

    def _set_secret(self, request: Request) -> Response:
        match = _SECRET.match(request.path)
        assert match is not None
        if match.group("app") != self.app:
            return Response(404, {"error": "app not found"})
        body = request.body if isinstance(request.body, dict) else {}
        if not isinstance(body.get("value"), str):
            return Response(400, {"error": "value is required"})
        name = match.group("name")
        self.app_secrets[name] = body["value"]
        self.secrets_version += 1
        digest = hashlib.sha256(body["value"].encode()).hexdigest()[:16]
        now = _now_iso()
        return Response(
            201, {"name": name, "digest": digest, "created_at": now, "updated_at": now, "version": self.secrets_version}
        )

    def _create(self, request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        self.create_bodies.append(body)
        config, refused = self._config_of(body)
        if refused is not None:
            return refused
        guest = config.get("guest") or {}
        if guest.get("memory_mb", 256) % 256:
            return Response(422, {"error": "invalid config.guest.memory_mb: must be a multiple of 256"})
        name = body.get("name") or f"auto-{secrets.token_hex(4)}"
        if any(m["name"] == name and m["state"] != "destroyed" for m in self.machines.values()):
            return Response(422, {"error": f"a machine with name {name!r} already exists", "status": "name_taken"})
        machine = self._new_machine(name, config, region=body.get("region"))
        machine["hidden_lists"] = self._lag
        machine["_skip_launch"] = bool(body.get("skip_launch"))
        return Response(200, self._public(machine))

    def _list(self, request: Request) -> Response:
        wanted = {
            key.removeprefix("metadata."): values[-1]
            for key, values in request.query.items()
            if key.startswith("metadata.")
        }
        found = []
        for machine in self.machines.values():
            if machine["state"] == "destroyed":
                continue
            metadata = machine["_metadata"]
            if any(metadata.get(key) != value for key, value in wanted.items()):
                continue
            if machine.get("hidden_lists", 0) > 0:
                machine["hidden_lists"] -= 1
                continue
            found.append(self._public(machine))
        return Response(200, found)

    def _get(self, machine: dict[str, Any], request: Request) -> Response:
        return Response(200, self._public(machine))

    def _update(self, machine: dict[str, Any], request: Request) -> Response:
        body = request.body if isinstance(request.body, dict) else {}
        self.update_bodies.append(body)
        config, refused = self._config_of(body)
        if refused is not None:
            return refused
        for field in ("name", "region"):
            if field in body and body[field] != machine[field]:
                return Response(422, {"error": f"{field} cannot be changed by an update"})
        machine["config"] = config
        machine["_metadata"] = dict(config.get("metadata") or {})
        machine["_secrets"] = dict(self.app_secrets)
        machine["instance_id"] = secrets.token_hex(6).upper()
        machine["updated_at"] = _now_iso()
        if not body.get("skip_launch") or machine["state"] == "started":
            machine["state"], machine["_born"] = "starting", time.monotonic()
        return Response(200, self._public(machine))

    def _start(self, machine: dict[str, Any], request: Request) -> Response:
        previous = machine["state"]
        if previous in ("created", "stopped", "suspended"):
            machine["state"] = "starting"
            machine["_skip_launch"] = False
            machine["_born"] = time.monotonic()
            if previous != "suspended":
                machine["instance_id"] = secrets.token_hex(6).upper()
        return Response(200, {"previous_state": previous})

    def _stop(self, machine: dict[str, Any], request: Request) -> Response:
        self.stop_bodies.append(request.body)
        if machine["state"] in ("started", "created", "starting"):
            machine["state"] = "stopped"
            machine["instance_id"] = secrets.token_hex(6).upper()
        return Response(200, {"ok": True})

    def _suspend(self, machine: dict[str, Any], request: Request) -> Response:
        # Only a running machine has memory to keep; its instance (and so its processes) survive.
        if machine["state"] not in ("started", "suspended"):
            return Response(412, {"error": f"machine is {machine['state']}, only a started machine can be suspended"})
        machine["state"] = "suspended"
        return Response(200, {"ok": True})

    def _delete(self, machine: dict[str, Any], request: Request) -> Response:
        self.delete_queries.append(request.query)
        forced = request.param("force") == "true" or request.param("kill") == "true"
        if machine["state"] in ("started", "starting") and not forced:
            return Response(
                412, {"error": "failed to destroy machine: machine still active, refusing to delete without force"}
            )
        machine["state"] = "destroyed"
        return Response(200, {"ok": True})

    def _wait(self, machine: dict[str, Any], request: Request) -> Response:
        wanted = request.param("state") or "started"
        if machine["state"] == wanted:
            return Response(200, {"ok": True, "state": wanted})
        return Response(408, {"error": f"timeout waiting for machine to be {wanted}"})

    # -- helpers --------------------------------------------------------------------------------

    def _config_of(self, body: dict[str, Any]) -> tuple[dict[str, Any], Response | None]:
        """A create's or an update's config, or why Fly refuses the body (412, 422)."""
        wanted = body.get("min_secrets_version")
        if isinstance(wanted, int) and wanted > self.secrets_version:
            return {}, Response(412, {"error": f"min_secrets_version {wanted} is not yet available on this app"})
        config = body.get("config")
        if not isinstance(config, dict) or not config.get("image"):
            return {}, Response(422, {"error": "invalid config: image is required"})
        return config, None

    def _new_machine(self, name: str, config: dict[str, Any], *, region: str | None = None) -> dict[str, Any]:
        machine_id = f"{next(self._ids):04x}{secrets.token_hex(5)}"
        machine: dict[str, Any] = {
            "id": machine_id,
            "name": name,
            "state": "created",
            "region": region or "iad",
            "instance_id": secrets.token_hex(6).upper(),
            "private_ip": "fdaa:0:1::2",
            "created_at": _now_iso(),
            "updated_at": _now_iso(),
            "host_status": "ok",
            "config": config,
            "_metadata": dict(config.get("metadata") or {}),
            "_secrets": dict(self.app_secrets),
            "_born": time.monotonic(),
            "_skip_launch": False,
        }
        self.machines[machine_id] = machine
        return machine

    def _advance(self) -> None:
        now = time.monotonic()
        for machine in self.machines.values():
            booting = machine["state"] == "starting" or (machine["state"] == "created" and not machine["_skip_launch"])
            if booting and now - machine["_born"] >= self.boot_delay_s:
                machine["state"] = "started"

    def _public(self, machine: dict[str, Any]) -> dict[str, Any]:
        """What the API shows: private bookkeeping stripped, plus fields nobody asked for."""
        shown = {k: v for k, v in machine.items() if not k.startswith("_") and k != "hidden_lists"}
        if machine["host_status"] != "ok":
            # An unreachable host: no config, only the incomplete one (fleet-apis §1.4).
            shown["config"] = None
            shown["incomplete_config"] = {"image": "unknown"}
        else:
            shown["config"] = {
                **machine["config"],
                "services": [{"autostop": "stop", "autostart": True}, {"autostop": False}],
                "init": {},
            }
        shown.setdefault("image_ref", {"registry": "registry.fly.io", "repository": "factory", "tag": "latest"})
        shown.setdefault("events", [{"type": "launch", "status": "created", "source": "user", "timestamp": 1}])
        shown.setdefault("checks", [])
        shown.setdefault("nonce", "")
        return shown
