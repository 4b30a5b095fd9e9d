"""``factory account …`` and ``factory notify``: Mission Control accounts, agents, tasks, notifications.

An account's service token is shown once, when it is issued; the store keeps only its sha256.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import anyio
import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from autoscaler.provider import LaunchSpec
from autoscaler.runtimes import RuntimeTick, reconcile_runtimes, runtime_worker_id
from contracts.errors import FactoryError, InvalidInput, NotFound
from contracts.launch import WorkerEnvironment
from contracts.roles import AccountStore, FleetStore
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
from factory.cmd_queue import read_workspace_files
from factory.console import (
    JsonOption,
    StoreOption,
    out,
    plain,
    print_json,
    print_result,
    print_rows,
    store_settings,
    when,
    with_store,
)
from factory.fleet import make_provider
from factory.settings import WorkerSettings, load
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
    workspace: Annotated[
        Path | None, typer.Option("--workspace", help="A folder with SOUL.md, AGENTS.md, … (as `factory agent set`).")
    ] = None,
    file: Annotated[list[str] | None, typer.Option("--file", help="NAME=PATH, e.g. SOUL.md=./soul.md")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an agent to the account, or change one (by slug)."""
    spec = _valid(
        RuntimeAgent,
        workspace_files=read_workspace_files(workspace, file or []),
        agent_id=f"{account_id}-{slug}",
        account_id=account_id,
        name=name or slug,
        slug=slug,
        heartbeat_interval=heartbeat,
        openclaw_agent_id=openclaw_agent,
    )
    kept = with_accounts(store, lambda s: s.runtime_agent_put(spec))
    print_result(
        kept, as_json, f"agent {plain(kept.agent_id)}: session {plain(kept.session_key)}, every {heartbeat} min"
    )


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
    print_result(kept, as_json, f"task {plain(kept.task_id)}: {plain(kept.title)} ({kept.status})")


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
    print_result(kept, as_json, f"notification {plain(kept.notification_id)} for {plain(kept.agent_id)} posted")


@account_app.command("list")
def list_accounts(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Accounts with their runtime status."""
    rows = with_accounts(store, lambda s: s.accounts())
    print_rows(
        rows,
        as_json,
        ("account", "name", "active", "runtime", "last health check", "droplet"),
        lambda a: (
            plain(a.account_id),
            plain(a.name),
            "yes" if a.active else "no",
            a.status,
            when(a.last_health_check),
            plain(a.droplet_id),
        ),
        "no accounts",
    )


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


# --------------------------------------------------------------------------- runtime machines

ProviderOption = Annotated[
    str, typer.Option("--provider", help="local or digitalocean (env: FACTORY_PROVIDER).", envvar="FACTORY_PROVIDER")
]


def reconcile_runtimes_command(
    provider: str, store: str | None, *, dry_run: bool = False, only: str | None = None
) -> RuntimeTick:
    """One tick of the runtime fleet: one machine running ``factory runtime`` per active account
    (``only``: that account's machine alone)."""
    if provider not in ("local", "digitalocean"):
        raise InvalidInput("--provider", f"account runtimes run on local or digitalocean, not {provider!r}")
    store_cfg = store_settings(store)
    workers = load(WorkerSettings)
    if provider != "local" and not store_cfg.is_convex:
        raise InvalidInput(
            "FACTORY_STORE",
            f"a runtime on {provider} cannot open the local SQLite file {store_cfg.store!r}; use a Convex deployment",
        )
    machines = make_provider(provider, store_cfg, runtimes=True)
    location = store_cfg.store if store_cfg.is_convex else str(Path(store_cfg.store).expanduser().resolve())

    async def main(opened: AccountStore) -> RuntimeTick:
        if not isinstance(opened, FleetStore):
            raise InvalidInput("store", f"{opened.name} keeps no launch ledger")

        async def spec_for(account_id: str, launch_id: str) -> LaunchSpec:
            # A new machine gets a new token: the one of a runtime it replaces stops working.
            token = new_service_token()
            await opened.account_token(account_id, token_hash(token))
            environment = WorkerEnvironment(
                worker_id=runtime_worker_id(account_id),
                launch_id=launch_id,
                store=location,  # resolved before the loop: a local runtime may start elsewhere
                sqlite_synchronous=None if store_cfg.is_convex else store_cfg.sqlite_synchronous,
                convex_auth_token=store_cfg.convex_auth_token if store_cfg.is_convex else None,
                secrets_key=store_cfg.secrets_key,
                command="runtime",
                account_id=account_id,
                service_token=token,
                # Local runtimes share this machine's gateway when one is configured; else each starts its own.
                gateway_url=workers.gateway_url if provider == "local" and workers.gateway_token else None,
                gateway_token=workers.gateway_token if provider == "local" else None,
            )
            return LaunchSpec(environment=environment)

        try:
            active = {a.account_id for a in await opened.accounts() if a.active}
            return await reconcile_runtimes(machines, opened, active, spec_for, dry_run=dry_run, only=only)
        finally:
            with anyio.CancelScope(shield=True):
                await machines.aclose()

    return with_accounts(store, main)


def print_runtime_tick(tick: RuntimeTick, as_json: bool) -> None:
    plan = tick.plan
    if as_json:
        print_json(
            {
                "create": list(plan.create),
                "destroy": [{"machineId": m, "reason": r} for m, r in plan.destroy],
                "created": [m.machine_id for m in tick.created],
                "destroyed": tick.destroyed,
                "errors": tick.errors,
            }
        )
    elif plan.empty:
        out.print("No changes. Every active account has its runtime.")
    else:
        for account in plan.create:
            out.print(f"+ runtime for account {plain(account)}")
        for machine_id, reason in plan.destroy:
            out.print(f"- machine {plain(machine_id)}: {plain(reason)}")
    if tick.errors:
        raise FactoryError(f"{len(tick.errors)} action(s) failed; first: {tick.errors[0]}")


def _set_active(store: str | None, account_id: str, active: bool) -> None:
    async def put(s: AccountStore) -> None:
        view = await s.account_view(account_id, 1)
        if view is None:
            raise NotFound("account", account_id)
        await s.account_put(view.account.model_copy(update={"active": active}))

    with_accounts(store, put)


@account_app.command("provision")
def provision(
    account_id: AccountArg, provider: ProviderOption = "local", store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Give the account its long-lived runtime machine (one per account: never a second)."""
    _set_active(store, account_id, True)
    print_runtime_tick(reconcile_runtimes_command(provider, store, only=account_id), as_json)


@account_app.command("deprovision")
def deprovision(
    account_id: AccountArg, provider: ProviderOption = "local", store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Drain the account's runtime (it finishes its jobs and goes offline) and destroy its machine."""
    _set_active(store, account_id, False)
    print_runtime_tick(reconcile_runtimes_command(provider, store, only=account_id), as_json)
