"""Fly Machines API wire details: the auth header, tolerant response models, state and errors.

Pure functions of their inputs, so the mapping is tested without a server.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from autoscaler.errors import ProviderError
from autoscaler.provider import MachineState
from autoscaler.providers._common import REDACTED, parse_each, shorten
from contracts.redact import mask
from contracts.retry import parse_retry_after

PROVIDER = "fly"
_MACAROON_PREFIXES = frozenset({"fm1r", "fm1a", "fm2"})


def authorization(token: str) -> str:
    """The Authorization header value fly-go would send for ``token``.

    Accepts what operators paste: a bare token, ``FlyV1 fm2_…`` from ``fly tokens create``, a
    ``Bearer …`` value, or a comma-separated list. Macaroons (``fm1r_``, ``fm1a_``, ``fm2_``) go out
    as ``FlyV1 a,b``; anything else is an OAuth token sent as ``Bearer``.
    """
    raw = token.strip()
    for scheme in ("FlyV1 ", "Bearer "):
        if raw.startswith(scheme):
            raw = raw[len(scheme) :]
            break
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    macaroons = [part for part in parts if part.split("_", 1)[0] in _MACAROON_PREFIXES]
    if macaroons:
        return "FlyV1 " + ",".join(macaroons)
    return "Bearer " + ",".join(parts)


class FlyMachineConfig(BaseModel):
    """The part of ``Machine.config`` we read. ``services`` (whose ``autostop`` is a bool on some
    machines and "off"/"stop"/"suspend" on others) is deliberately not modelled: a field we do not
    read must never be able to fail a list (fly-autoscaler crashed on exactly that, issue #41)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    image: str | None = None
    metadata: dict[str, str] | None = None


class FlyMachine(BaseModel):
    """A machine as the API returns it; every field but ``id`` may be missing or null."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str | None = None
    state: str | None = None
    region: str | None = None
    instance_id: str | None = None
    created_at: str | None = None
    host_status: str | None = None
    # Null when the host cannot be reached (host_status != "ok"): the state is then unknowable.
    config: FlyMachineConfig | None = None

    @property
    def metadata(self) -> dict[str, str]:
        return (self.config.metadata if self.config else None) or {}


def parse_machines(payload: Any) -> tuple[list[FlyMachine], int]:
    """Machines from a list response, and how many entries were unreadable (skipped, not fatal)."""
    return parse_each(FlyMachine, payload)


# Fly states (docs "machine states") onto ours. Terminal states are absent: such machines are gone.
_STATES: dict[str, MachineState] = {
    "creating": "starting",
    "created": "starting",
    "starting": "starting",
    "restarting": "starting",
    "updating": "starting",
    "replacing": "starting",
    "started": "running",
    "stopping": "stopping",
    "suspending": "stopping",
    "destroying": "stopping",
    "stopped": "stopped",
    "suspended": "suspended",
    "failed": "failed",
    "launch_failed": "failed",
}
GONE_STATES = frozenset({"destroyed", "replaced", "migrated"})


def normalise_state(machine: FlyMachine) -> MachineState:
    if machine.host_status not in (None, "ok") or machine.config is None:
        return "unknown"
    return _STATES.get(machine.state or "", "unknown")


def _body(response: httpx.Response) -> tuple[str, str | None]:
    """The API's own words (``error``/``message``) and its ``status`` code word, if any."""
    try:
        data = response.json()
    except ValueError:
        return shorten(response.text or response.reason_phrase), None
    if not isinstance(data, dict):
        return shorten(str(data)), None
    words = [str(data[key]) for key in ("error", "message") if data.get(key)]
    status = data.get("status")
    return shorten("; ".join(words) or response.reason_phrase), status if isinstance(status, str) else None


class NameTaken(ProviderError):
    """Create refused: a machine already has the name we derive from this launch id."""


def _name_taken(status: int, code: str | None, said: str) -> bool:
    # fly-go knows the body code "name_taken"; the HTTP status for it is not documented, so the
    # wording is checked too for a 409/422 that carries no code.
    if code == "name_taken":
        return True
    lowered = said.lower()
    return status in (409, 422) and "name" in lowered and ("taken" in lowered or "already exists" in lowered)


def error_from_response(
    operation: str, response: httpx.Response, *, app: str, create: bool, secrets: list[str]
) -> ProviderError:
    """One ProviderError per documented status (fleet-apis §1.9 and §6.4)."""
    status = response.status_code
    said, code = _body(response)
    said = mask(said, secrets, REDACTED)
    request_id = response.headers.get("fly-request-id")

    def error(message: str, *, retryable: bool, ambiguous: bool = False) -> ProviderError:
        return ProviderError(
            PROVIDER,
            operation,
            message,
            status=status,
            retryable=retryable,
            ambiguous=ambiguous,
            retry_after_s=parse_retry_after(response.headers.get("retry-after"), time.time()),
            request_id=request_id,
        )

    if create and _name_taken(status, code, said):
        return NameTaken(
            PROVIDER, operation, f"machine name already taken: {said}", status=status, request_id=request_id
        )
    if status in (401, 403):
        return error(
            f"the Fly API token was rejected for app {app!r} ({said}): it is missing, expired or lacks "
            "access to this app; set FLY_API_TOKEN to a deploy token for the app "
            f"(`fly tokens create deploy -a {app}`)",
            retryable=False,
        )
    if status == 404:
        return error(f"not found: {said}", retryable=False)
    if status == 408:
        return error(f"the API timed out waiting for the platform: {said}", retryable=True, ambiguous=create)
    if status == 409:
        return error(
            f"the machine is leased by someone else (a deploy or `fly scale`?): {said}; skip it this tick",
            retryable=True,
        )
    if status == 429:
        # A 429 is refused before any work: a create is not ambiguous and may be tried again.
        return error(f"rate limited: {said}", retryable=True)
    if status >= 500:
        return error(f"Fly API server error: {said}", retryable=True, ambiguous=create)
    # 400, 412 (capacity, secrets version), 422 (validation) and the rest: the request itself is wrong.
    return error(f"request refused: {said}", retryable=False)


def error_from_transport(operation: str, exc: httpx.HTTPError, *, create: bool, timeout_s: float) -> ProviderError:
    """Map a failure with no response. Only a request that never left is safe to repeat blindly."""
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(exc, httpx.TimeoutException):
        message = f"no answer within {timeout_s:g}s ({type(exc).__name__})"
    else:
        message = f"connection failed: {type(exc).__name__}: {shorten(str(exc), 200)}"
    if create and not never_sent:
        message += "; the machine may exist: look it up by launch id"
    return ProviderError(PROVIDER, operation, message, retryable=True, ambiguous=create and not never_sent)
