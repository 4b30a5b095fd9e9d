"""What the local provider is told (``LocalConfig``), and the environment a worker starts with."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoscaler.provider import LaunchSpec

PROVIDER = "local"
# What a process needs to run at all, passed through from the launching process's environment.
# Nothing else is: credentials the reconciler holds (cloud tokens, model keys) never reach a worker.
PROCESS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "XDG_CACHE_HOME", "VIRTUAL_ENV", "PYTHONPATH")


def process_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of ``environ`` (the edge passes ``os.environ``)."""
    return {name: environ[name] for name in PROCESS_ENV if name in environ}


def _default_command() -> tuple[str, ...]:
    return (sys.executable, "-m", "factory", "worker", "run")


class LocalConfig(BaseModel):
    """Everything the local provider needs; built by the composition root."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Launch records (<launch>.json) and worker logs (<launch>.log); relative to the working directory.
    state_dir: Path = Path(".factory/local")
    # The worker's argv; argv[0] is looked up on PATH when it has no slash.
    command: tuple[str, ...] = Field(default_factory=_default_command, min_length=1)
    # destroy: SIGTERM, this long for the worker to drain (its grace is 30 s by default), then SIGKILL.
    stop_timeout_s: float = Field(default=40.0, gt=0)
    # The process basics every worker starts with (see PROCESS_ENV), under its WorkerEnvironment.
    base_env: dict[str, str] = Field(default_factory=dict)
    # A non-zero exit nobody asked for, this soon after the start, is ``failed`` (a crash at boot).
    failed_window_s: float = Field(default=60.0, ge=0)
    # destroy removes the record; the worker's log stays for a post-mortem unless this is false.
    keep_logs: bool = True

    @field_validator("command")
    @classmethod
    def _command_present(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].strip():
            raise ValueError("argv[0] is empty")
        return value

    @field_validator("base_env")
    @classmethod
    def _only_process_basics(cls, value: dict[str, str]) -> dict[str, str]:
        extra = sorted(set(value) - set(PROCESS_ENV))
        if extra:
            raise ValueError(
                f"{extra[0]!r} is not a process basic ({', '.join(PROCESS_ENV)}); workers are told the rest"
            )
        return value


def child_env(config: LocalConfig, spec: LaunchSpec, machine_id: str) -> dict[str, str]:
    """The worker's environment: the process basics, then its WorkerEnvironment, nothing else.
    Holds secrets in clear: pass it to spawn and drop it."""
    told = spec.environment.model_copy(update={"provider": PROVIDER, "machine_id": machine_id})
    return {**config.base_env, **told.render()}
