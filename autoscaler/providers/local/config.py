"""What the local provider is told (``LocalConfig``), and the environment a worker starts with."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoscaler.errors import ProviderConfigError
from autoscaler.provider import LaunchSpec
from autoscaler.providers._common import LAUNCH_ID_ENV, WORKER_ID_ENV, worker_env

PROVIDER = "local"
PROVIDER_ENV = "FACTORY_WORKER_PROVIDER"
MACHINE_ID_ENV = "FACTORY_MACHINE_ID"
_IDENTITY_ENV = frozenset({WORKER_ID_ENV, LAUNCH_ID_ENV, PROVIDER_ENV, MACHINE_ID_ENV})

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    # The worker starts from this process's environment (minus ``unset_env``) when true, else from nothing.
    inherit_env: bool = True
    # Removed from the inherited environment: credentials a worker has no business holding.
    unset_env: tuple[str, ...] = ("FLY_API_TOKEN", "DIGITALOCEAN_TOKEN")
    # Added for every worker, under each spec's own env (a spec wins over these).
    env: dict[str, str] = Field(default_factory=dict)
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

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
            if key in _IDENTITY_ENV:
                raise ValueError(f"{key!r} is set by the provider itself")
        return value


def child_env(config: LocalConfig, spec: LaunchSpec, machine_id: str) -> dict[str, str]:
    """The worker's environment. Holds secrets in clear: pass it to spawn and drop it."""
    for key in (PROVIDER_ENV, MACHINE_ID_ENV):
        if key in spec.env or key in spec.secret_env:
            raise ProviderConfigError(f"LaunchSpec.env.{key}", "is set by the local provider itself")
    own = worker_env(spec)
    env: dict[str, str] = dict(os.environ) if config.inherit_env else {}
    for key in config.unset_env:
        env.pop(key, None)
    env.update(config.env)
    env.update(own)
    env[PROVIDER_ENV] = PROVIDER
    env[MACHINE_ID_ENV] = machine_id
    return env
