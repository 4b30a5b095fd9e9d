"""Output at the edge: rich for people, one JSON document for scripts, one line for errors.

What commands share: the ``--store`` and ``--json`` options, opening the store around an action,
and option checks that turn a bad number into one line before anything runs. Everything printed
goes through :mod:`factory.safe_text` (``out`` and ``err`` are its inert consoles).
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import anyio
import typer
from pydantic import BaseModel
from rich.console import RenderableType
from rich.table import Table

from contracts.models import to_wire
from contracts.roles import EnqueueStore
from factory.safe_text import err, out, visible
from factory.settings import StoreSettings, load
from factory.stores import FullStore, open_full_store, open_store

__all__ = [
    "JsonOption",
    "StoreOption",
    "err",
    "finite",
    "out",
    "print_json",
    "print_result",
    "print_rows",
    "store_settings",
    "with_enqueue_store",
    "with_store",
    "without_hash",
]

T = TypeVar("T")
R = TypeVar("R")

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


def finite(value: float | None) -> float | None:
    """An option callback: NaN slips past a range check (every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a number of seconds")
    return value


def store_settings(store: str | None) -> StoreSettings:
    return load(StoreSettings, store=store)


def with_store(
    store: str | None,
    action: Callable[[FullStore], Awaitable[T]],
    *,
    role: str = "operator",
    create: bool = True,
) -> T:
    """Open the store the options name, run ``action`` on it, and close it.

    ``role`` names what the command needs, for the one-line refusal in compat mode. A command
    that only reads passes ``create=False``: it never creates a store, and a missing SQLite file
    is one line (exit 1)."""
    settings = store_settings(store)

    async def run() -> T:
        opened = open_full_store(settings, role=role, create=create)
        try:
            return await action(opened)
        finally:
            await opened.aclose()

    return anyio.run(run)


def with_enqueue_store(store: str | None, action: Callable[[EnqueueStore], Awaitable[T]]) -> T:
    """As :func:`with_store`, for commands that only enqueue (compat mode can); creates the store."""
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
    """Stored or user-supplied text, shown as written: the consoles interpret no markup, and
    control characters become visible escapes."""
    return visible(text or "")


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = to_wire(value)
    elif isinstance(value, list):
        value = [to_wire(v) if isinstance(v, BaseModel) else v for v in value]
    text = json.dumps(value)  # ASCII: every control character in a value is a \u escape
    if out.is_terminal:
        out.print_json(text, highlight=False)
    else:
        print(text)  # exactly one line for scripts, no wrapping


def print_result(value: object, as_json: bool, line: str) -> None:
    """What a command did: ``value`` as JSON for scripts, or ``line`` for people."""
    if as_json:
        print_json(value)
    else:
        out.print(plain(line))


def print_rows(
    rows: Sequence[R],
    as_json: bool,
    headers: Sequence[str],
    cells: Callable[[R], Sequence[RenderableType]],
    empty: str,
    *,
    wire: Callable[[R], object] | None = None,
) -> None:
    """A listing: one JSON array for scripts (each row through ``wire`` when given, to leave
    fields out), else a table with a row of ``cells`` per row, or the line ``empty``."""
    if as_json:
        print_json(list(rows) if wire is None else [wire(r) for r in rows])
        return
    table = Table(*headers)
    for row in rows:
        table.add_row(*cells(row))
    out.print(table if rows else empty)


def without_hash(record: BaseModel) -> dict[str, Any]:
    """A token record's wire JSON without its hash: listings never show it, even to scripts."""
    return {k: v for k, v in to_wire(record).items() if k != "tokenHash"}
