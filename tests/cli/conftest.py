"""Run the real ``factory`` command in a fresh directory, as a user would.

``cli`` runs it in this process (:mod:`tests.cli.inprocess`: the real entry point with the given
arguments, environment, directory and stdin, without a fork): a command costs milliseconds instead
of a Python start-up and every import, ~1.5 s on a loaded 2-core machine, over a hundred times in
the suite. ``cli_process`` runs ``python -m factory`` as its own process, for what only a process
shows (the module entry point, its exit code as the shell sees it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    cwd: Path
    env: dict[str, str]
    in_process: bool = True

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> Result:
        if self.in_process:
            # Imported here: inprocess imports Result from this module. (pytest's timeout bounds it.)
            from tests.cli.inprocess import invoke

            return invoke(args, cwd=self.cwd, env=self.env, stdin=input or "")
        proc = subprocess.run(
            [sys.executable, "-m", "factory", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORY_", "OPENCLAW_", "FLY_", "DIGITALOCEAN"))}
    env["COLUMNS"] = "200"
    return Cli(cwd=tmp_path, env=env)


@pytest.fixture
def cli_process(cli: Cli) -> Cli:
    return Cli(cwd=cli.cwd, env=cli.env, in_process=False)
