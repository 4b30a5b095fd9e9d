"""Structured logs for every process, configured once at the edge.

Keys that look like credentials are masked before rendering, whatever code logged them: a
token must never reach a log line even by accident.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from factory.safe_text import visible
from factory.settings import LogSettings

_SENSITIVE = ("token", "secret", "password", "authorization", "api_key", "apikey")


def _mask(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(word in key.lower() for word in _SENSITIVE):
            event[key] = "***"
    return event


def _inert(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Values can be stored text or a remote's error body: on a terminal they are shown, not obeyed.
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = visible(value)
    return event


def configure(settings: LogSettings, *, default_level: str = "info") -> None:
    level = getattr(logging, (settings.level or default_level).upper())
    json = settings.format == "json"  # JSON escapes control characters itself
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _mask,
            *([] if json else [_inert]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Standard-library logging (libraries: ours all log through structlog) follows the same level, and
    # libraries that log full URLs at INFO (httpx) never go below WARNING.
    logging.basicConfig(stream=sys.stderr)
    logging.getLogger().setLevel(level)
    for noisy in ("httpx", "httpcore", "websockets"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
