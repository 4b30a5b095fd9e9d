"""``factory push …``, ``factory dispatch``, ``factory broadcast``: agents that speak first."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from contracts.errors import InvalidInput, NotFound
from contracts.models import to_wire
from contracts.push import BroadcastRequest, PushJob, PushTemplate, Schedule, check_push_id
from contracts.roles import ScheduleStore
from factory.console import JsonOption, StoreOption, out, plain, print_json, print_result, print_rows, with_store
from schedules.dispatcher import DispatchReport, dispatch_due, first_run_at, run_now
from schedules.slots import describe

push_app = typer.Typer(help="Push templates and jobs: messages agents send on a schedule.", no_args_is_help=True)
template_app = typer.Typer(help="Message texts (with {variables}) and the agent that sends them.", no_args_is_help=True)
job_app = typer.Typer(help="A template on a schedule, for one conversation.", no_args_is_help=True)
push_app.add_typer(template_app, name="template")
push_app.add_typer(job_app, name="job")

M = TypeVar("M", bound=BaseModel)
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
ROLE = "schedule"


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _valid(build: type[M], **fields: object) -> M:
    """The model from the fields given (None: not given), or one line naming the bad field."""
    try:
        return build.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


def _push_id(value: str) -> str:
    """Checks an id argument before any store is opened, so a bad one is a usage line, not a traceback."""
    try:
        return check_push_id(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _overlay(current: Mapping[str, object], changes: Mapping[str, object]) -> dict[str, object]:
    """The current fields with the options the operator gave (None: not given, keep)."""
    return {**current, **{key: value for key, value in changes.items() if value is not None}}


def _at(value: str | None) -> int | None:
    """``--now`` for simulated dispatch: an ISO 8601 instant with its offset."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("--now", f"{value!r} is not an ISO 8601 instant such as 2026-12-01T09:00:30+01:00") from None
    if when.tzinfo is None:
        raise InvalidInput("--now", f"{value!r} has no UTC offset; write e.g. 2026-12-01T09:00:30+01:00")
    return int(when.timestamp() * 1000)


# --------------------------------------------------------------------------- templates


@template_app.command("add")
def template_add(
    template_id: Annotated[str, typer.Argument(help="An id such as morning-checkin.", callback=_push_id)],
    agent: Annotated[str, typer.Option("--agent", help="The agent that sends it.")],
    text: Annotated[str, typer.Option("--text", help="The message; {name} takes the job's --var name=….")],
    title: Annotated[str | None, typer.Option("--title", help="A label for operators.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create (or replace) a push template."""
    template = _valid(PushTemplate, template_id=template_id, agent_key=agent, text=text, title=title)
    saved = with_store(store, lambda s: s.push_template_put(template), role=ROLE)
    print_result(saved, as_json, f"template {saved.template_id} saved")


@template_app.command("edit")
def template_edit(
    template_id: Annotated[str, typer.Argument(help="The template to change.", callback=_push_id)],
    agent: Annotated[str | None, typer.Option("--agent", help="The agent that sends it.")] = None,
    text: Annotated[str | None, typer.Option("--text", help="The message.")] = None,
    title: Annotated[str | None, typer.Option("--title", help="A label for operators.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a template; jobs using it send the new text from their next slot."""

    async def edit(s: ScheduleStore) -> PushTemplate:
        current = next((t for t in await s.push_templates() if t.template_id == template_id), None)
        if current is None:
            raise NotFound("push template", template_id)
        changes = {"agent_key": agent, "text": text, "title": title}
        changed = _valid(PushTemplate, **_overlay(current.model_dump(exclude_none=True), changes))
        return await s.push_template_put(changed)

    saved = with_store(store, edit, role=ROLE, create=False)
    print_result(saved, as_json, f"template {saved.template_id} saved")


@template_app.command("list")
def template_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every push template."""
    rows = with_store(store, lambda s: s.push_templates(), role=ROLE, create=False)
    print_rows(
        rows,
        as_json,
        ("template", "agent", "title", "text"),
        lambda t: (plain(t.template_id), plain(t.agent_key), plain(t.title or "-"), plain(t.text)),
        "no push templates",
    )


@template_app.command("delete")
def template_delete(
    template_id: Annotated[str, typer.Argument(help="The template to delete.", callback=_push_id)],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete a template that no job uses."""
    deleted = with_store(store, lambda s: s.push_template_delete(template_id), role=ROLE, create=False)
    if not deleted:
        raise NotFound("push template", template_id)
    print_result({"deleted": template_id}, as_json, f"template {template_id} deleted")


# --------------------------------------------------------------------------- jobs


def _schedule(
    daily: str | None, weekly: str | None, weekdays: str | None, monthly: str | None, day: str | None, tz: str
) -> Schedule | None:
    chosen = [(kind, at) for kind, at in (("daily", daily), ("weekly", weekly), ("monthly", monthly)) if at]
    if not chosen:
        return None
    if len(chosen) > 1:
        raise InvalidInput("--daily/--weekly/--monthly", "choose one of them")
    kind, at = chosen[0]
    days: list[int] = []
    for part in (weekdays or "").split(","):
        name = part.strip().lower()[:3]
        if not name:
            continue
        if name not in _WEEKDAYS and not name.isdigit():
            raise InvalidInput("--weekdays", f"{part!r} is not a weekday; write e.g. mon,wed,fri or 1,3,5")
        days.append(_WEEKDAYS.get(name) or int(name))
    day_of_month: int | str | None = None
    if day is not None:
        day_of_month = "last" if day.strip().lower() == "last" else (int(day) if day.strip().isdigit() else day)
    schedule = _valid(Schedule, kind=kind, at=at, tz=tz, weekdays=tuple(days) or None, day=day_of_month)
    return schedule


def _variables(pairs: list[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return None
    variables = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InvalidInput("--var", f"{pair!r} is not name=value")
        variables[name.strip()] = value
    return variables


DailyOpt = Annotated[str | None, typer.Option("--daily", help="Every day at HH:mm.")]
WeeklyOpt = Annotated[str | None, typer.Option("--weekly", help="At HH:mm on --weekdays.")]
WeekdaysOpt = Annotated[str | None, typer.Option("--weekdays", help="For --weekly: e.g. mon,wed,fri.")]
MonthlyOpt = Annotated[str | None, typer.Option("--monthly", help="At HH:mm on --day.")]
DayOpt = Annotated[str | None, typer.Option("--day", help="For --monthly: 1–31 (clamped) or last.")]
TzOpt = Annotated[str | None, typer.Option("--tz", help="IANA time zone, e.g. Europe/Rome. Default UTC.")]
VarOpt = Annotated[list[str] | None, typer.Option("--var", help="name=value for {name} in the text; repeatable.")]
CatchUpOpt = Annotated[
    str | None, typer.Option("--catch-up", help="latest (run the latest missed slot) or skip. Default latest.")
]
SkipAfterOpt = Annotated[int | None, typer.Option("--skip-after", help="With --catch-up skip: seconds of grace.")]


@job_app.command("add")
def job_add(
    job_id: Annotated[str, typer.Argument(help="An id such as alice-morning.", callback=_push_id)],
    template: Annotated[str, typer.Option("--template", help="The template it sends.")],
    conversation: Annotated[
        str | None, typer.Option("--conversation", "-c", help="The conversation it speaks in.")
    ] = None,
    telegram_user: Annotated[
        str | None, typer.Option("--telegram-user", help="Or a Telegram user id, reached through their binding.")
    ] = None,
    bot: Annotated[str | None, typer.Option("--bot", help="With --telegram-user: the bot's numeric id.")] = None,
    daily: DailyOpt = None,
    weekly: WeeklyOpt = None,
    weekdays: WeekdaysOpt = None,
    monthly: MonthlyOpt = None,
    day: DayOpt = None,
    tz: TzOpt = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Provider user id (default: from the chat).")] = None,
    var: VarOpt = None,
    catch_up: CatchUpOpt = None,
    skip_after: SkipAfterOpt = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a template in a conversation."""
    schedule = _schedule(daily, weekly, weekdays, monthly, day, tz or "UTC")
    if schedule is None:
        raise InvalidInput("--daily/--weekly/--monthly", "give a schedule, e.g. --daily 09:00 --tz Europe/Rome")

    async def add(s: ScheduleStore) -> PushJob:
        job = _valid(
            PushJob,
            job_id=job_id,
            template_id=template,
            conversation_id=conversation,
            telegram_user_id=telegram_user,
            bot_id=bot,
            schedule=schedule,
            provider_user_id=user_id,
            variables=_variables(var),
            catch_up=catch_up,
            skip_after_s=skip_after,
            next_run_at=first_run_at(schedule, await s.now_ms()),
        )
        return await s.push_job_put(job)

    # A job sends a stored template, so a store must already exist: a mistyped --store is refused
    # instead of left behind as a new, empty store.
    saved = with_store(store, add, role=ROLE, create=False)
    print_result(saved, as_json, f"job {saved.job_id}: {describe(saved.schedule)}, next run {_when(saved.next_run_at)}")


@job_app.command("edit")
def job_edit(
    job_id: Annotated[str, typer.Argument(help="The job to change.", callback=_push_id)],
    template: Annotated[str | None, typer.Option("--template", help="The template it sends.")] = None,
    conversation: Annotated[str | None, typer.Option("--conversation", "-c", help="The conversation.")] = None,
    daily: DailyOpt = None,
    weekly: WeeklyOpt = None,
    weekdays: WeekdaysOpt = None,
    monthly: MonthlyOpt = None,
    day: DayOpt = None,
    tz: TzOpt = None,
    var: VarOpt = None,
    catch_up: CatchUpOpt = None,
    skip_after: SkipAfterOpt = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a job; a new schedule or zone takes effect from its next slot."""

    async def edit(s: ScheduleStore) -> PushJob:
        current = await _job(s, job_id)
        schedule = _schedule(daily, weekly, weekdays, monthly, day, tz or current.schedule.tz)
        if schedule is None and tz is not None:
            schedule = _valid(Schedule, **(current.schedule.model_dump() | {"tz": tz}))
        changes = {
            "template_id": template,
            "conversation_id": conversation,
            "schedule": schedule,
            "variables": _variables(var),
            "catch_up": catch_up,
            "skip_after_s": skip_after,
        }
        fields = _overlay(current.model_dump(exclude_none=True), changes)
        if schedule is not None:
            fields["next_run_at"] = first_run_at(schedule, await s.now_ms())
        changed = _valid(PushJob, **fields)
        return await s.push_job_put(changed)

    saved = with_store(store, edit, role=ROLE, create=False)
    print_result(saved, as_json, f"job {saved.job_id}: {describe(saved.schedule)}, next run {_when(saved.next_run_at)}")


async def _job(s: ScheduleStore, job_id: str) -> PushJob:
    found = next((j for j in await s.push_jobs() if j.job_id == job_id), None)
    if found is None:
        raise NotFound("push job", job_id)
    return found


def _set_enabled(job_id: str, enabled: bool, store: str | None, as_json: bool) -> None:
    async def toggle(s: ScheduleStore) -> PushJob:
        current = await _job(s, job_id)
        # Re-enabling starts from the next slot: what was missed while disabled is not sent.
        next_run = first_run_at(current.schedule, await s.now_ms()) if enabled else current.next_run_at
        return await s.push_job_put(current.model_copy(update={"enabled": enabled, "next_run_at": next_run}))

    saved = with_store(store, toggle, role=ROLE, create=False)
    print_result(saved, as_json, f"job {job_id} {'enabled' if enabled else 'disabled'}")


@job_app.command("enable")
def job_enable(
    job_id: Annotated[str, typer.Argument(callback=_push_id)], store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Resume a job from its next slot."""
    _set_enabled(job_id, True, store, as_json)


@job_app.command("disable")
def job_disable(
    job_id: Annotated[str, typer.Argument(callback=_push_id)], store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Stop a job without deleting it."""
    _set_enabled(job_id, False, store, as_json)


@job_app.command("delete")
def job_delete(
    job_id: Annotated[str, typer.Argument(callback=_push_id)], store: StoreOption = None, as_json: JsonOption = False
) -> None:
    """Delete a job (its dispatch records stay for the audit)."""
    if not with_store(store, lambda s: s.push_job_delete(job_id), role=ROLE, create=False):
        raise NotFound("push job", job_id)
    print_result({"deleted": job_id}, as_json, f"job {job_id} deleted")


@job_app.command("list")
def job_list(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Every push job with its schedule and next run."""
    rows = with_store(store, lambda s: s.push_jobs(), role=ROLE, create=False)
    print_rows(
        rows,
        as_json,
        ("job", "template", "conversation", "schedule", "catch-up", "enabled", "next run", "last run"),
        lambda j: (
            plain(j.job_id),
            plain(j.template_id),
            plain(j.target),
            describe(j.schedule),
            j.catch_up,
            "yes" if j.enabled else "no",
            _when(j.next_run_at),
            plain(j.last_run_key or "-"),
        ),
        "no push jobs",
    )


@job_app.command("dispatches")
def job_dispatches(
    job_id: Annotated[str, typer.Argument(callback=_push_id)],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A job's dispatch record: every slot with its run key and outcome."""
    rows = with_store(store, lambda s: s.push_dispatches(job_id, limit), role=ROLE, create=False)
    print_rows(
        rows,
        as_json,
        ("run key", "slot", "status", "message", "error"),
        lambda d: (plain(d.run_key), _when(d.slot_at), d.status, plain(d.message_id or "-"), plain(d.error or "")),
        f"no dispatches for {job_id}",
    )


@push_app.command("run-now")
def push_run_now(
    job_id: Annotated[str, typer.Argument(help="The job to run once, out of schedule.", callback=_push_id)],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send a job's message now, under its own run key; its schedule is unchanged."""
    result = with_store(store, lambda s: run_now(s, job_id), role=ROLE, create=False)
    if result.status == "failed":
        raise InvalidInput(job_id, f"the push could not be enqueued: {result.error}")
    print_result(result, as_json, f"{result.run_key}: {result.status} {result.message_id or ''}".rstrip())


# --------------------------------------------------------------------------- dispatch and broadcast


def dispatch(
    now: Annotated[
        str | None, typer.Option("--now", help="Dispatch as of this ISO 8601 instant (for tests and replays).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Jobs per pass.")] = 200,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enqueue every due push job's slot, exactly once (for cron: any interval)."""
    at = _at(now)
    report: DispatchReport = with_store(store, lambda s: dispatch_due(s, now=at, limit=limit), role=ROLE, create=False)
    summary = {key: report.count(key) for key in ("enqueued", "skipped", "failed", "raced")}
    if as_json:
        dispatched = [to_wire(d) for d in report.dispatches]
        print_json({"now": report.now, "scanned": report.scanned, **summary, "dispatches": dispatched})
        return
    out.print(f"dispatched {report.scanned} due job(s): " + ", ".join(f"{k} {v}" for k, v in summary.items()))


def broadcast(
    text: Annotated[str, typer.Option("--text", help="The message every recipient gets.")],
    agents: Annotated[
        str | None, typer.Option("--agents", help="Only these agents (comma-separated). Default: every enabled one.")
    ] = None,
    broadcast_id: Annotated[
        str | None, typer.Option("--id", help="Makes a retried command idempotent. Default: a new id.")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Who sends it (recorded in the audit).")] = "operator",
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send one message to every conversation of the chosen agents, with an audit."""
    chosen = [a.strip() for a in agents.split(",") if a.strip()] if agents else None
    request = _valid(
        BroadcastRequest,
        broadcast_id=broadcast_id or f"b-{secrets.token_hex(6)}",
        text=text,
        requested_by=by,
        agents=chosen,
    )
    result = with_store(store, lambda s: s.broadcast(request), role=ROLE, create=False)
    if as_json:
        print_json(result)
        return
    sent = sum(1 for r in result.recipients if r.status == "enqueued")
    failed = len(result.recipients) - sent
    again = "" if result.fresh else " (already sent: nothing re-sent)"
    out.print(plain(f"broadcast {result.broadcast_id}: {sent} enqueued, {failed} failed{again}"))


def broadcasts(
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Past broadcasts: who, when, text hash, recipients and their outcome."""
    rows = with_store(store, lambda s: s.broadcasts(limit), role=ROLE, create=False)
    print_rows(
        rows,
        as_json,
        ("broadcast", "by", "when", "text sha256", "agents", "recipients", "status"),
        lambda b: (
            plain(b.broadcast_id),
            plain(b.requested_by),
            _when(b.requested_at),
            b.text_sha256[:12],
            plain(",".join(b.agents) if b.agents else "all"),
            f"{sum(1 for r in b.recipients if r.status == 'enqueued')}/{len(b.recipients)}",
            b.status,
        ),
        "no broadcasts",
    )
