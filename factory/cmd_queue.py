"""``factory enqueue``, ``factory queue …``, ``factory conversation …``, ``factory agent …``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError
from rich.table import Table
from rich.text import Text

from contracts.errors import InvalidInput
from contracts.models import MAX_PAGE, WORKSPACE_FILES, AgentProfile, BridgeConfig, EnqueueRequest, require_id
from contracts.roles import EnqueueStore
from factory.console import (
    JsonOption,
    StoreOption,
    finite,
    out,
    print_json,
    print_rows,
    when,
    with_enqueue_store,
    with_store,
)
from factory.safe_text import plain

queue_app = typer.Typer(help="Inspect and repair the queue.", no_args_is_help=True)
conversation_app = typer.Typer(help="Look at conversations.", no_args_is_help=True)
agent_app = typer.Typer(help="Agent profiles and their secrets.", no_args_is_help=True)

# Wire field → the option that sets it, so an error names what the user typed.
_FLAGS = {
    "conversationId": "--conversation",
    "agentKey": "--agent",
    "priority": "--priority",
    "maxAttempts": "--max-attempts",
    "messageText": "TEXT",
    "providerUserId": "--user-id",
    "provider": "--provider",
    "externalMessageId": "--external-id",
}
MAX_DELAY_S = 366 * 24 * 3600  # a year (and a day): later than that is a schedule, not a delay


def enqueue(
    text: Annotated[str, typer.Argument(help="The message text.")],
    conversation: Annotated[str, typer.Option("--conversation", "-c", help="Conversation id, e.g. telegram:42.")],
    agent: Annotated[str, typer.Option("--agent", help="Agent profile key.")] = "default",
    external_id: Annotated[
        str | None, typer.Option("--external-id", help="Upstream message id; the same id is queued once.")
    ] = None,
    priority: Annotated[int, typer.Option("--priority", help="0–100; higher goes first.")] = 50,
    provider: Annotated[str, typer.Option("--provider", help="Where the reply goes: telegram, app, …")] = "app",
    user_id: Annotated[str | None, typer.Option("--user-id", help="Provider user id (default: conversation).")] = None,
    delay_s: Annotated[
        float,
        typer.Option(
            "--delay", min=0, max=MAX_DELAY_S, callback=finite, help="Deliver no sooner than this many seconds."
        ),
    ] = 0.0,
    max_attempts: Annotated[int, typer.Option("--max-attempts", help="Deliveries before the dead letter.")] = 5,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a message for an agent."""

    # Checked before the store is opened: bad input never creates a store or changes one.
    try:
        # One validation, fields in order: the conversation is named before what defaults from it.
        request = EnqueueRequest.model_validate(
            {
                "conversation_id": conversation,
                "agent_key": agent,
                "payload": {
                    "provider": provider,
                    "provider_user_id": user_id if user_id is not None else conversation or "-",
                    "message_text": text,
                    "external_message_id": external_id,
                },
                "priority": priority,
                "max_attempts": max_attempts,
            }
        )
    except ValidationError as exc:
        problem = InvalidInput.from_validation(exc)
        field = problem.field.removeprefix("payload.")
        flag = _FLAGS.get(field)
        raise InvalidInput(f"{field} ({flag})" if flag else field, problem.problem) from None

    async def run(opened: EnqueueStore) -> str:
        if delay_s > 0:
            # The store's clock, not ours; a delay within a year keeps the time in bounds.
            scheduled = await opened.now_ms() + int(delay_s * 1000)
            return await opened.enqueue(request.model_copy(update={"scheduled_for": scheduled}))
        return await opened.enqueue(request)

    message_id = with_enqueue_store(store, run)
    if as_json:
        print_json({"messageId": message_id})
    else:
        out.print(f"queued {message_id} in {conversation}")


@queue_app.command("stats")
def stats(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Counts of messages, conversations and workers."""
    result = with_store(store, lambda s: s.queue_stats(), create=False)
    if as_json:
        print_json(result)
        return
    table = Table(title="queue", show_header=False)
    for label, value in [
        ("queued", result.queued),
        ("processing", result.processing),
        ("done", result.done),
        ("dead letters", result.dead_letters),
        ("ready conversations", result.ready_conversations),
        ("in-flight conversations", result.inflight_conversations),
        ("retrying conversations", result.retrying_conversations),
        ("scheduled conversations", result.scheduled_conversations),
        (
            "oldest ready",
            "-" if result.oldest_ready_age_ms is None else f"{result.oldest_ready_age_ms / 1000:.1f}s",
        ),
        ("workers", ", ".join(f"{k} {v}" for k, v in sorted(result.workers.items())) or "none"),
    ]:
        table.add_row(label, str(value))
    out.print(table)


@queue_app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="How many, newest first.")] = 100,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Messages that will not be retried, with the reason."""
    rows = with_store(store, lambda s: s.list_dead_letters(limit), create=False)
    print_rows(
        rows,
        as_json,
        ("message", "conversation", "external id / run key", "attempts", "when", "reason"),
        lambda d: (
            d.message_id,
            d.conversation_id,
            d.external_message_id or "-",
            f"{d.attempts}/{d.max_attempts}",
            when(d.dead_lettered_at),
            d.last_error,
        ),
        "no dead letters",
    )


@queue_app.command("redrive")
def redrive(
    message_id: Annotated[str | None, typer.Argument(help="The dead letter to retry.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put dead letters back in the queue with fresh attempts."""
    if (message_id is None) == (not all_):
        raise InvalidInput("MESSAGE_ID", "give one message id, or --all (not both)")
    result = with_store(store, lambda s: s.redrive(None if all_ else message_id), create=False)
    if message_id is not None and not result.redriven:
        # With --json too: a script must see that nothing was redriven.
        raise InvalidInput("MESSAGE_ID", f"{message_id!r} is not a dead letter; see `factory queue dead-letters`")
    if as_json:
        print_json(result)
    else:
        out.print(f"redriven {len(result.redriven)} message(s)")


@queue_app.command("release-expired")
def release_expired(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Return messages whose lease expired to the queue (or the dead letter when out of attempts)."""
    result = with_store(store, lambda s: s.release_expired(), create=False)
    if as_json:
        print_json(result)
    else:
        out.print(f"released {result.released}, dead-lettered {result.dead_lettered}")


@conversation_app.command("show")
def show_conversation(
    conversation_id: Annotated[str, typer.Argument(help="The conversation id.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_PAGE, help="History entries to show.")] = 50,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """A conversation's history and queue counts."""
    conv = with_store(store, lambda s: s.get_conversation(conversation_id, limit), create=False)
    if conv is None:
        raise InvalidInput("CONVERSATION_ID", f"no conversation {conversation_id!r} in this store")
    if as_json:
        print_json(conv)
        return
    out.print(
        Text.assemble(
            plain(conv.conversation_id, style="bold"),
            plain(
                f" agent={conv.agent_key} queued={conv.queued} processing={conv.processing} done={conv.done} "
                f"dead={conv.dead_letters} history={conv.message_count}"
            ),
        )
    )
    for m in conv.history:
        out.print(Text.assemble((when(m.at), "dim"), " ", (m.role, "bold"), ": ", plain(m.content, multiline=True)))


def read_workspace_files(workspace: Path | None, files: list[str]) -> dict[str, str]:
    """Workspace files from a folder (the ones a profile may carry) and from NAME=PATH pairs."""
    found: dict[str, Path] = {}
    if workspace is not None:
        if not workspace.is_dir():
            raise InvalidInput("--workspace", f"{workspace} is not a folder")
        found.update({name: workspace / name for name in WORKSPACE_FILES if (workspace / name).is_file()})
        for skill in sorted(workspace.glob("skills/*/SKILL.md")):
            found[skill.relative_to(workspace).as_posix()] = skill
    for pair in files:
        name, sep, where = pair.partition("=")
        if not sep or not name or not where:
            raise InvalidInput("--file", f"{pair!r} is not NAME=PATH, e.g. SOUL.md=./soul.md")
        found[name] = Path(where)
    texts = {}
    for name, source in found.items():
        try:
            texts[name] = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                "--file", f"cannot read {source} for {name}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
    return texts


@agent_app.command("set")
def set_agent(
    agent_key: Annotated[str, typer.Argument(help="Agent profile key.")],
    openclaw_agent: Annotated[str, typer.Option("--openclaw-agent", help="OpenClaw agent id.")] = "main",
    secret_ref: Annotated[list[str] | None, typer.Option("--secret-ref", help="Secrets it may use.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Refuse new messages for it.")] = False,
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace", help="A folder with SOUL.md, AGENTS.md, IDENTITY.md, USER.md, skills/<name>/SKILL.md."
        ),
    ] = None,
    file: Annotated[
        list[str] | None, typer.Option("--file", help="One workspace file, NAME=PATH (e.g. SOUL.md=./soul.md).")
    ] = None,
    skill: Annotated[
        list[str] | None, typer.Option("--skill", help="A skill the agent may see (repeat); others stay hidden.")
    ] = None,
    no_skills: Annotated[bool, typer.Option("--no-skills", help="The agent sees no skill at all.")] = False,
    bridge: Annotated[bool, typer.Option("--bridge", help="Give the agent a bridge to its app.")] = False,
    bridge_base_url: Annotated[str | None, typer.Option("--bridge-base-url", help="The app's base URL.")] = None,
    bridge_service_id: Annotated[str | None, typer.Option("--bridge-service-id", help="X-Agent-Service-Id.")] = None,
    bridge_app_key: Annotated[str | None, typer.Option("--bridge-app-key", help="X-Agent-App.")] = None,
    bridge_service_key_ref: Annotated[
        str | None, typer.Option("--bridge-service-key-ref", help="The secret holding X-Agent-Service-Key.")
    ] = None,
    bridge_allow_host: Annotated[
        list[str] | None, typer.Option("--bridge-allow-host", help="A host bridge calls may reach (repeat).")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Create or update an agent profile (the whole profile: options left out take their defaults).

    Workspace files go into the agent's OpenClaw workspace when a machine boots.
    --skill/--no-skills: the gateway shows the agent only those skills.
    A bridge gives the agent an agent-bridge skill that calls its app (and host exec, for it alone).
    """
    if skill and no_skills:
        raise InvalidInput("--no-skills", "give --skill NAME or --no-skills, not both")
    bridge_fields = {
        "base_url": bridge_base_url,
        "service_id": bridge_service_id,
        "app_key": bridge_app_key,
        "service_key_secret_ref": bridge_service_key_ref,
    }
    wants_bridge = bridge or any(v is not None for v in bridge_fields.values()) or bool(bridge_allow_host)
    try:
        profile = AgentProfile(
            agent_key=agent_key,
            openclaw_agent_id=openclaw_agent,
            enabled=not disabled,
            secrets_ref=secret_ref or [f"telegram.botToken.{agent_key}"],
            workspace_files=read_workspace_files(workspace, file or []),
            skills=[] if no_skills else skill or None,
            bridge_config=BridgeConfig.model_validate({**bridge_fields, "allowed_hosts": bridge_allow_host or []})
            if wants_bridge
            else None,
        )
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    with_store(store, lambda s: s.upsert_agent_profile(profile), role="agents")
    extras = []
    if profile.workspace_files:
        extras.append(f"{len(profile.workspace_files)} workspace file(s)")
    if profile.skills is not None:
        extras.append(f"skills: {', '.join(profile.skills) or 'none'}")
    if profile.has_bridge:
        extras.append("bridge")
    suffix = f" ({'; '.join(extras)})" if extras else ""
    out.print(f"agent {agent_key} {'disabled' if disabled else 'enabled'}{suffix}")


@agent_app.command("secret")
def set_secret(
    secret_ref: Annotated[str, typer.Argument(help="e.g. telegram.botToken.default")],
    store: StoreOption = None,
) -> None:
    """Store a secret, read from the prompt or stdin (never from the command line)."""
    require_id("SECRET_REF", secret_ref)
    # From a pipe, one line as it is (no prompt, no echo warning); at a terminal, a hidden prompt.
    value = typer.prompt("value", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    if not value.strip():
        raise InvalidInput("value", "must not be empty: type the secret, or pipe it on stdin")
    version = with_store(store, lambda s: s.import_secret(secret_ref, SecretStr(value.strip())), role="agents")
    out.print(f"{secret_ref} stored (version {version})")
