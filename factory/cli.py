"""The ``factory`` command line: the composition root that wires settings, stores and loops."""

from __future__ import annotations

import sys

import typer

from contracts.errors import FactoryError, InvalidInput
from factory import cmd_console, cmd_frontdoor, cmd_push, cmd_queue, cmd_reconcile, cmd_run, cmd_serve, cmd_worker
from factory.console import err
from factory.logging import configure
from factory.settings import LogSettings, load

app = typer.Typer(
    name="factory",
    help="A fleet runtime for OpenClaw agents behind a per-conversation queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _quiet_by_default() -> None:
    """One-shot commands print their result and, on failure, one error line; their logs stay
    below that unless FACTORY_LOG_LEVEL asks. Long-running commands configure their own level."""
    configure(load(LogSettings), default_level="error")


app.command("enqueue")(cmd_queue.enqueue)
app.add_typer(cmd_queue.queue_app, name="queue")
app.add_typer(cmd_queue.conversation_app, name="conversation")
app.add_typer(cmd_queue.agent_app, name="agent")
app.add_typer(cmd_worker.worker_app, name="worker")
app.command("reconcile")(cmd_reconcile.reconcile)
app.command("run")(cmd_run.run)
app.add_typer(cmd_push.push_app, name="push")
app.command("dispatch")(cmd_push.dispatch)
app.command("broadcast")(cmd_push.broadcast)
app.command("broadcasts")(cmd_push.broadcasts)
app.command("serve")(cmd_serve.serve)
app.add_typer(cmd_serve.telegram_app, name="telegram")
app.add_typer(cmd_frontdoor.pairing_app, name="pairing")
app.add_typer(cmd_frontdoor.bindings_app, name="bindings")
app.add_typer(cmd_frontdoor.secrets_app, name="secrets")
app.add_typer(cmd_frontdoor.tokens_app, name="app-token")
app.add_typer(cmd_console.console_app, name="console")


def main() -> None:
    """Run the CLI; our errors end as one line on stderr, never a traceback."""
    try:
        app()
    except InvalidInput as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except FactoryError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
