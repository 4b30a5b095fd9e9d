"""``factory bridge call``: what the baked ``agent-bridge`` skill runs to call the agent's app.

The agent runs it through its exec tool; it prints one JSON object on stdout either way (the agent
reads it) and exits 0 when the app said ``success: true``, 1 otherwise. Settings come from the
file the worker writes for the agent at every job (``worker.bridge``), never from arguments, so no
key ever appears on a command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from contracts.errors import FactoryError
from factory.settings import WorkerSettings, load
from worker.boot import bridge_config_path
from worker.bridge import BridgeClient, read_bridge_config

bridge_app = typer.Typer(help="Bridge tool calls from an agent to its app.", no_args_is_help=True)
EXIT_FAILED = 1


def _default_config() -> Path | None:
    """The ``main`` agent's settings on this machine, when OPENCLAW_STATE_DIR says where that is."""
    bridge_dir = load(WorkerSettings).bridge_dir
    return None if bridge_dir is None else bridge_config_path(bridge_dir, "main")


@bridge_app.command("call")
def call(
    function: Annotated[str, typer.Argument(help="The app function, e.g. tasks.list (a 'bridge.' prefix is fine).")],
    args: Annotated[str, typer.Option("--args", help="The function's arguments: one JSON object.")] = "{}",
    config: Annotated[
        Path | None, typer.Option("--config", help="The agent's bridge settings (written by the worker).")
    ] = None,
) -> None:
    """Call FUNCTION on the agent's app (POST {baseUrl}/agent/execute) and print the answer as JSON."""
    answer: dict[str, Any]
    try:
        parsed = json.loads(args)
    except json.JSONDecodeError as exc:
        answer = _failure(function, f"--args: not JSON ({exc.msg}); pass one object such as '{{\"id\": 7}}'")
    else:
        if not isinstance(parsed, dict):
            answer = _failure(function, "--args: must be one JSON object such as '{\"id\": 7}'")
        else:
            answer = anyio.run(_call, function, parsed, config or _default_config())
    # One plain JSON line: the agent reads it, whatever the terminal.
    print(json.dumps(answer), flush=True)
    if not answer.get("success"):
        raise typer.Exit(EXIT_FAILED)


async def _call(function: str, args: dict[str, Any], config: Path | None) -> dict[str, Any]:
    if config is None:
        return _failure(function, "--config: no bridge settings given and OPENCLAW_STATE_DIR is not set")
    try:
        client = BridgeClient(read_bridge_config(config))
    except FactoryError as exc:
        return _failure(function, str(exc))
    try:
        return await client.call(function, args)
    except FactoryError as exc:
        return _failure(function, str(exc))
    finally:
        await client.aclose()


def _failure(function: str, error: str) -> dict[str, Any]:
    return {"success": False, "functionKey": function.removeprefix("bridge."), "error": error}
