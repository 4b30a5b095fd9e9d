"""The ``factory`` command line: the composition root that wires settings, stores and loops.

Every way a command can fail on something a user can get wrong ends the same way: one line on
stderr (``error: <what>: <why and the fix>``, made inert by :mod:`factory.safe_text`) and an exit
code: 2 for bad input (arguments, settings, usage), 1 for anything else that failed, 0 on success.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from typer._click.exceptions import NoArgsIsHelpError  # typer vendors click: its one help-as-error

from contracts.errors import FactoryError, InvalidInput, first_factory_error
from factory import (
    cmd_account,
    cmd_bridge,
    cmd_console,
    cmd_frontdoor,
    cmd_push,
    cmd_queue,
    cmd_reconcile,
    cmd_run,
    cmd_runtime,
    cmd_serve,
    cmd_snapshots,
    cmd_worker,
)
from factory.logging import configure
from factory.safe_text import err, one_line, visible
from factory.settings import LogSettings, load

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

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
app.add_typer(cmd_snapshots.snapshots_app, name="snapshots")
app.add_typer(cmd_bridge.bridge_app, name="bridge")
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
app.add_typer(cmd_account.account_app, name="account")
app.command("notify")(cmd_account.notify)
app.command("runtime")(cmd_runtime.runtime)


def _fail(message: str, code: int) -> int:
    err.print(f"error: {one_line(message)}")
    return code


def _undecodable(argv: Sequence[str]) -> str | None:
    """One line for the first argument that is not UTF-8 text, naming its option when it has one."""
    for i, arg in enumerate(argv):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            name, eq, value = arg.partition("=")
            if eq and name.startswith("-"):
                where, shown = name, value  # --option=value
            else:
                where = argv[i - 1] if i and argv[i - 1].startswith("-") else f"argument {i + 1}"
                shown = arg
            return f"{visible(where)}: {visible(shown)} is not UTF-8 text; pass the value in UTF-8"
    return None


def run(argv: Sequence[str]) -> int:
    """Run the CLI on ``argv`` and return its exit code; failures are one line on stderr."""
    undecodable = _undecodable(argv)
    if undecodable is not None:
        return _fail(undecodable, EXIT_BAD_INPUT)
    try:
        code = app(args=list(argv), prog_name="factory", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()  # `factory queue` alone: the help page, as a usage error
        return exc.exit_code
    except typer.TyperException as exc:  # click's usage errors: a bad option value, a missing argument
        return _fail(exc.format_message(), exc.exit_code)
    except typer.Abort:
        return _fail("aborted (no input)", EXIT_FAILED)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except InvalidInput as exc:
        return _fail(str(exc), EXIT_BAD_INPUT)
    except FactoryError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except BaseExceptionGroup as group:
        found = first_factory_error(group)
        if found is None:
            raise
        return _fail(str(found), EXIT_BAD_INPUT if isinstance(found, InvalidInput) else EXIT_FAILED)
    return code if isinstance(code, int) else 0


def main() -> None:
    """The console script: run with the process's arguments and exit with the code."""
    sys.exit(run(sys.argv[1:]))
