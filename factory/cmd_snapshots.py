"""``factory snapshots list|prune``: the archives of agents' memory, and their retention."""

from __future__ import annotations

from typing import Annotated

import typer

from contracts.errors import InvalidInput
from factory.console import JsonOption, StoreOption, out, print_json, print_rows, when, with_store

snapshots_app = typer.Typer(help="Snapshots of agents' OpenClaw state (memory that follows a conversation).")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


@snapshots_app.command("list")
def list_snapshots(
    conversation: Annotated[str | None, typer.Option("--conversation", "-c", help="Only this conversation's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many, newest first.")] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Snapshots, newest first: ready ones are what a new machine restores."""
    rows = with_store(store, lambda s: s.snapshot_list(conversation, limit), role="snapshots", create=False)
    print_rows(
        rows,
        as_json,
        ("snapshot", "conversation", "agent", "status", "reason", "size", "taken", "worker / error"),
        lambda r: (
            r.snapshot_id,
            r.conversation_id,
            r.agent_key,
            r.status,
            r.reason,
            _size(r.size_bytes),
            when(r.created_at),
            r.error or r.worker_id,
        ),
        "no snapshots",
    )


@snapshots_app.command("prune")
def prune_snapshots(
    keep: Annotated[int, typer.Option("--keep", help="Ready snapshots to keep per conversation.")] = 3,
    conversation: Annotated[str | None, typer.Option("--conversation", "-c", help="Only this conversation.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Keep the newest --keep per conversation and expire the rest (their archives are deleted).

    --keep 0 removes every snapshot of the conversation: its next machine seeds from history."""
    if keep < 0:
        raise InvalidInput("--keep", "must be 0 or more")
    result = with_store(store, lambda s: s.snapshot_prune(keep, conversation), role="snapshots")
    if as_json:
        print_json(result)
    else:
        out.print(f"expired {result.expired} snapshot(s), gave up {result.abandoned} abandoned upload(s)")
