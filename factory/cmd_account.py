"""``factory account …`` and ``factory notify``: Mission Control accounts, agents, tasks, notifications.

An account's service token is shown once, when it is issued; the store keeps only its sha256.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from contracts.errors import InvalidInput, NotFound
from contracts.roles import AccountStore
from contracts.runtime import (
    DEFAULT_HEARTBEAT_MINUTES,
    Account,
    AccountView,
    Notification,
    RuntimeAgent,
    Task,
    new_service_token,
    token_hash,
)
from factory.console import JsonOption, StoreOption, out, plain, print_json, when, with_store
from factory.stores import FullStore

account_app = typer.Typer(
    help="Mission Control accounts: agents, tasks, notifications, runtimes.", no_args_is_help=True
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
ROLE = "runtime"
AccountArg = Annotated[str, typer.Argument(help="The account id.")]


def _valid(build: type[M], **fields: object) -> M:
    """The model from the fields given (None: not given), or one line naming the bad field."""
    try:
        return build.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


def with_accounts(store: str | None, action: Callable[[AccountStore], Awaitable[T]]) -> T:
    """Run ``action`` on a store that keeps accounts; a binding that does not is one line."""

    async def run(opened: FullStore) -> T:
        if not isinstance(opened, AccountStore):
            raise InvalidInput("store", f"{opened.name} does not keep Mission Control accounts yet; use a SQLite store")
        return await action(opened)

    return with_store(store, run, role=ROLE)


@account_app.command("create")
def create(
    account_id: AccountArg,
    name: Annotated[str | None, typer.Option(help="A display name (default: the id).")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account (or rename one) and issue its service token, shown once."""
    account = _valid(Account, account_id=account_id, name=name or account_id)
    token = new_service_token()

    async def put(s: AccountStore) -> Account:
        kept = await s.account_put(account)
        await s.account_token(account_id, token_hash(token))
        return kept

    kept = with_accounts(store, put)
    _show_token(kept.account_id, token.get_secret_value(), as_json)


@account_app.command("token")
def token(account_id: AccountArg, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Issue a new service token for the account (the old one stops working at once), shown once."""
    fresh = new_service_token()
    if not with_accounts(store, lambda s: s.account_token(account_id, token_hash(fresh))):
        raise NotFound("account", account_id)
    _show_token(account_id, fresh.get_secret_value(), as_json)


def _show_token(account_id: str, value: str, as_json: bool) -> None:
    if as_json:
        print_json({"accountId": account_id, "serviceToken": value})
        return
    out.print(f"account {plain(account_id)}: its runtime's SERVICE_TOKEN (shown once; the store keeps its hash):")
    print(value)


@account_app.command("agent")
def agent(
    account_id: AccountArg,
    slug: Annotated[str, typer.Argument(help="The agent's slug (its session is agent:SLUG:ACCOUNT).")],
    name: Annotated[str | None, typer.Option(help="A display name (default: the slug).")] = None,
    heartbeat: Annotated[
        int, typer.Option("--heartbeat-minutes", help="Minutes between the agent's heartbeats.")
    ] = DEFAULT_HEARTBEAT_MINUTES,
    openclaw_agent: Annotated[str, typer.Option(help="The OpenClaw agent id it runs as.")] = "main",
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an agent to the account, or change one (by slug)."""
    spec = _valid(
        RuntimeAgent,
        agent_id=f"{account_id}-{slug}",
        account_id=account_id,
        name=name or slug,
        slug=slug,
        heartbeat_interval=heartbeat,
        openclaw_agent_id=openclaw_agent,
    )
    kept = with_accounts(store, lambda s: s.runtime_agent_put(spec))
    if as_json:
        print_json(kept)
        return
    out.print(f"agent {plain(kept.agent_id)}: session {plain(kept.session_key)}, heartbeat every {heartbeat} min")


@account_app.command("task")
def task(
    account_id: AccountArg,
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    title: Annotated[str, typer.Option(help="What the task is.")],
    status: Annotated[str, typer.Option(help="inbox, assigned, in_progress, review, done or blocked.")] = "inbox",
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create or update a task of the account."""
    spec = _valid(Task, task_id=task_id, account_id=account_id, title=title, status=status)
    kept = with_accounts(store, lambda s: s.task_put(spec))
    if as_json:
        print_json(kept)
        return
    out.print(f"task {plain(kept.task_id)}: {plain(kept.title)} ({kept.status})")


def notify(
    account_id: AccountArg,
    slug: Annotated[str, typer.Argument(help="The slug of the agent to notify.")],
    title: Annotated[str, typer.Option(help="The notification's title.")],
    body: Annotated[str, typer.Option(help="Its text.")] = "",
    kind: Annotated[str, typer.Option("--type", help="Its type (assignment, mention, …).")] = "mention",
    task_id: Annotated[str | None, typer.Option("--task", help="Its task: the reply is posted there.")] = None,
    notification_id: Annotated[str | None, typer.Option("--id", help="Its id (default: a new one).")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Post a notification for an agent of the account; its runtime delivers it."""
    spec = _valid(
        Notification,
        notification_id=notification_id or "ntf_" + secrets.token_hex(8),
        account_id=account_id,
        agent_id=f"{account_id}-{slug}",
        type=kind,
        title=title,
        body=body,
        task_id=task_id,
    )
    kept = with_accounts(store, lambda s: s.notification_post(spec))
    if as_json:
        print_json(kept)
        return
    out.print(f"notification {plain(kept.notification_id)} for {plain(kept.agent_id)} posted")


@account_app.command("list")
def list_accounts(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Accounts with their runtime status."""
    rows = with_accounts(store, lambda s: s.accounts())
    if as_json:
        print_json(rows)
        return
    table = Table("account", "name", "active", "runtime", "last health check", "droplet")
    for a in rows:
        table.add_row(
            plain(a.account_id),
            plain(a.name),
            "yes" if a.active else "no",
            a.status,
            when(a.last_health_check),
            plain(a.droplet_id),
        )
    out.print(table if rows else "no accounts")


@account_app.command("show")
def show(
    account_id: AccountArg,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Notifications and posts shown.")] = 20,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """The account's runtime status, agents (with heartbeats), tasks, notifications and agents' posts."""
    view = with_accounts(store, lambda s: s.account_view(account_id, limit))
    if view is None:
        raise NotFound("account", account_id)
    if as_json:
        print_json(view)
        return
    _print_view(view)


def _print_view(view: AccountView) -> None:
    a = view.account
    out.print(
        f"account {plain(a.account_id)} ({plain(a.name)}): runtime {a.status}, last health check "
        f"{when(a.last_health_check)}, version {plain(a.version) or '-'}, droplet {plain(a.droplet_id) or '-'}"
    )
    agents = Table("agent", "session", "every", "heartbeat", "at")
    for g in view.agents:
        agents.add_row(
            plain(g.name), plain(g.session_key), f"{g.heartbeat_interval} min", g.heartbeat_status or "-",
            when(g.last_heartbeat_at),
        )  # fmt: skip
    out.print(agents if view.agents else "no agents")
    notes = Table("notification", "agent", "title", "task", "delivered")
    for n in view.notifications:
        notes.add_row(
            plain(n.notification_id), plain(n.agent_id), plain(n.title), plain(n.task_id), when(n.delivered_at)
        )
    out.print(notes if view.notifications else "no notifications")
    posts = Table("task", "agent", "posted", "message")
    for m in view.messages:
        posts.add_row(plain(m.task_id), plain(m.agent_id), when(m.created_at), plain(m.content[:200]))
    out.print(posts if view.messages else "no agent posts")
