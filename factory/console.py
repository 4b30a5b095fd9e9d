"""Output at the edge: rich for people, one JSON document for scripts, one line for errors."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import anyio
import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from contracts.models import to_wire
from contracts.roles import EnqueueStore
from factory.settings import StoreSettings, load
from factory.stores import FullStore, open_full_store, open_store

T = TypeVar("T")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="SQLite file path or Convex URL (https://NAME.convex.cloud). Env: FACTORY_STORE. "
        "Default: ./.factory/factory.db",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one machine-readable JSON document.")]


def store_settings(store: str | None) -> StoreSettings:
    return load(StoreSettings, store=store)


def with_store(store: str | None, action: Callable[[FullStore], Awaitable[T]], *, role: str = "operator") -> T:
    """Open the store the options name, run ``action`` on it, and close it.

    ``role`` names what the command needs, for the one-line refusal in compat mode."""
    settings = store_settings(store)

    async def run() -> T:
        opened = open_full_store(settings, role=role)
        try:
            return await action(opened)
        finally:
            await opened.aclose()

    return anyio.run(run)


def with_enqueue_store(store: str | None, action: Callable[[EnqueueStore], Awaitable[T]]) -> T:
    """As :func:`with_store`, for commands that only enqueue (compat mode can)."""
    settings = store_settings(store)

    async def run() -> T:
        opened = open_store(settings)
        try:
            return await action(opened)
        finally:
            await opened.aclose()

    return anyio.run(run)


def when(ms: int | None) -> str:
    """An epoch-milliseconds time as operators read it (UTC), or "-"."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def plain(text: str | None) -> str:
    """Stored or user-supplied text, shown as written (no rich markup interpreted)."""
    return escape(text or "")


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = to_wire(value)
    elif isinstance(value, list):
        value = [to_wire(v) if isinstance(v, BaseModel) else v for v in value]
    text = json.dumps(value)
    if out.is_terminal:
        out.print_json(text, highlight=False)
    else:
        print(text)  # exactly one line for scripts, no wrapping
