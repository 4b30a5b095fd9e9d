"""DigitalOcean wire details: tolerant droplet model, status mapping, error mapping.

Pure functions of their inputs, so the mapping is tested without a server.
"""

from __future__ import annotations

import re
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict

from autoscaler.errors import ProviderError
from autoscaler.provider import MachineState
from autoscaler.providers._common import REDACTED, iso_to_ms, parse_each, shorten
from autoscaler.providers._do_transport import HttpStatusError, never_sent
from contracts.redact import mask
from contracts.retry import parse_retry_after

PROVIDER = "digitalocean"
FLEET_TAG = "factory"
LAUNCH_TAG_PREFIX = "factory-launch-"
WORKER_TAG_PREFIX = "factory-worker-"
# DigitalOcean's tag pattern (openapi): letters, digits, _ - : and at most 255 characters.
TAG = re.compile(r"[A-Za-z0-9_\-:]{1,255}")

# "off" still bills (disk, CPU, RAM and IP stay reserved): reported as stopped so the planner
# destroys it. "archive" droplets are gone for our purposes and left out.
_STATES: dict[str, MachineState] = {"new": "starting", "active": "running", "off": "stopped"}
ARCHIVED = "archive"


class Droplet(BaseModel):
    """A droplet as the API returns it; only ``id`` is required."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: int
    name: str | None = None
    status: str | None = None
    created_at: str | None = None
    tags: list[str] | None = None
    # An object ({"slug": "nyc3", ...}) in responses; tolerate a bare slug too.
    region: dict[str, Any] | str | None = None

    @property
    def region_slug(self) -> str | None:
        if isinstance(self.region, dict):
            slug = self.region.get("slug")
            return slug if isinstance(slug, str) else None
        return self.region

    def tag_value(self, prefix: str) -> str | None:
        for tag in self.tags or []:
            if tag.startswith(prefix) and len(tag) > len(prefix):
                return tag[len(prefix) :]
        return None

    @property
    def state(self) -> MachineState:
        return _STATES.get(self.status or "", "unknown")

    @property
    def created_at_ms(self) -> int | None:
        return iso_to_ms(self.created_at)


def parse_droplets(payload: Any) -> tuple[list[Droplet], int]:
    """Droplets from a list response, and how many entries were unreadable (skipped, not fatal)."""
    return parse_each(Droplet, payload.get("droplets") if isinstance(payload, dict) else None)


def _said(exc: HttpStatusError) -> tuple[str, str | None]:
    body = exc.body if isinstance(exc.body, dict) else {}
    words = [str(body[key]) for key in ("id", "message") if body.get(key)]
    request_id = body.get("request_id") or exc.headers.get("x-request-id") or exc.headers.get("X-Request-Id")
    return shorten(": ".join(words) or exc.text or f"HTTP {exc.status}"), (str(request_id) if request_id else None)


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def retry_after(headers: dict[str, str], now_s: float) -> float | None:
    """Seconds until DigitalOcean will take requests again: ``retry-after``, else ``ratelimit-reset``."""
    delay = parse_retry_after(_header(headers, "retry-after"), now_s)
    if delay is not None:
        return delay
    reset = _header(headers, "ratelimit-reset")
    try:
        # ratelimit-reset is a Unix time: when the oldest counted request leaves the window.
        return max(0.0, float(reset) - now_s) if reset else None
    except ValueError:
        return None


def error_from_status(
    operation: str, exc: HttpStatusError, *, create: bool, secrets: list[str], now_s: float
) -> ProviderError:
    """One ProviderError per documented status (fleet-apis §3.4 and §6.4)."""
    status = exc.status
    said, request_id = _said(exc)
    said = mask(said, secrets, REDACTED)

    def error(message: str, *, retryable: bool, ambiguous: bool = False) -> ProviderError:
        return ProviderError(
            PROVIDER,
            operation,
            message,
            status=status,
            retryable=retryable,
            ambiguous=ambiguous,
            retry_after_s=retry_after(exc.headers, now_s) if status == 429 else None,
            request_id=request_id,
        )

    if status == 401:
        return error(
            f"the DigitalOcean token was rejected ({said}): it is invalid, expired or revoked; set "
            "DIGITALOCEAN_TOKEN to a personal access token with droplet and tag scopes",
            retryable=False,
        )
    if status == 403:
        return error(
            f"the DigitalOcean token lacks permission ({said}): it needs the droplet:create, "
            "droplet:read, droplet:update, droplet:delete, tag:create and tag:read scopes",
            retryable=False,
        )
    if status == 404:
        return error(f"not found: {said}", retryable=False)
    if status == 429:
        # Refused before any work: even a create is safe to send again after the wait.
        return error(f"rate limited: {said}", retryable=True)
    if status >= 500:
        suffix = "; the droplet may exist: look it up by launch tag" if create else ""
        return error(f"DigitalOcean server error: {said}{suffix}", retryable=True, ambiguous=create)
    # 400, 422 (droplet limit, bad size/region/image) and the rest: the request itself is wrong.
    return error(f"request refused: {said}", retryable=False)


def error_from_transport(
    operation: str, exc: requests.RequestException, *, create: bool, timeout_s: float
) -> ProviderError:
    """Map a failure with no response. Only a request that never left is safe to repeat blindly."""
    safe = never_sent(exc)
    if isinstance(exc, requests.Timeout):
        message = f"no answer within {timeout_s:g}s ({type(exc).__name__})"
    else:
        # requests' messages name the host and path, never the headers that carry the token.
        message = f"connection failed ({type(exc).__name__})"
    if create and not safe:
        message += "; the droplet may exist: look it up by launch tag"
    return ProviderError(PROVIDER, operation, message, retryable=True, ambiguous=create and not safe)
