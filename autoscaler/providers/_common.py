"""Helpers both providers share: the worker's environment, names, wire parsing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from autoscaler.provider import LaunchSpec

# Fleet ownership markers: Fly metadata keys and (with a prefix) DigitalOcean tags.
ROLE_KEY = "factory_role"
ROLE_WORKER = "worker"
LAUNCH_KEY = "factory_launch_id"
WORKER_KEY = "factory_worker_id"
CONVERSATION_KEY = "factory_conversation_id"

_NOT_SLUG = re.compile(r"[^a-z0-9]+")
# Longest machine/droplet name we generate: DNS-label sized, which both platforms accept.
_MAX_NAME = 63
# What a secret an API echoed back reads as in our errors (contracts.redact.mask puts it there).
REDACTED = "[redacted]"


def worker_env(spec: LaunchSpec, provider: str, *, secrets: bool = True) -> dict[str, str]:
    """The environment a new worker boots with: the spec's allow-listed environment, told which
    provider started it. Holds secret values in clear (unless ``secrets=False``, for a platform
    that delivers them its own way): hand it to the platform and drop it."""
    return spec.environment.model_copy(update={"provider": provider}).render(secrets=secrets)


def secret_values(spec: LaunchSpec) -> list[str]:
    return spec.environment.secret_values()


def machine_name(prefix: str, launch_id: str) -> str:
    """A deterministic, platform-safe name for the machine of one launch.

    Deterministic so a retried create of the same launch is visible as the same name; the launch
    id in metadata or tags stays the authoritative link, since slugging can merge two ids.
    """
    slug = _NOT_SLUG.sub("-", launch_id.lower()).strip("-") or "launch"
    return f"{prefix}-{slug}"[:_MAX_NAME].rstrip("-")


def iso_to_ms(value: str | None) -> int | None:
    """Epoch milliseconds from an RFC 3339 timestamp; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return int(when.timestamp() * 1000)


def shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


M = TypeVar("M", bound=BaseModel)


def parse_each(model: type[M], items: object) -> tuple[list[M], int]:
    """Every entry of a list response that ``model`` can read, and how many it could not.

    Platforms add fields and shapes over time; one entry we cannot read is skipped and counted,
    never a reason to fail the whole list.
    """
    if not isinstance(items, list):
        return [], 0
    parsed: list[M] = []
    skipped = 0
    for item in items:
        try:
            parsed.append(model.model_validate(item))
        except ValidationError:
            skipped += 1
    return parsed, skipped
