"""The worker container's OpenClaw gateway: its config, and the environment it starts with.

Run by entrypoint.sh, twice:

  python gateway_config.py                  write the gateway config from the environment
  python gateway_config.py exec CMD ARGS…   replace this process with the gateway (CMD ARGS…),
                                            given only what it needs (gateway.config.gateway_env)

The config holds ``${VAR}`` references, never secret values: the gateway resolves them from its own
environment, so the state directory can be snapshotted or read without leaking a token or key. That
environment is an allow-list: the container's store token, cloud credentials and any other key stay
with the worker, so an agent talked into reading its environment finds nothing of the kind. Both
steps reuse ``gateway.config`` (from the installed factory wheel), the same code the worker's tests
run against a real gateway.

Environment:
  FACTORY_OPENCLAW_MODEL            required: "openai/<model>" or "anthropic/<model>" (the key comes from
                                    OPENAI_API_KEY / ANTHROPIC_API_KEY), or a model id served at
  FACTORY_OPENCLAW_MODEL_BASE_URL   an OpenAI-compatible endpoint ending in /v1 (key in
                                    FACTORY_OPENCLAW_MODEL_API_KEY, optional for private hosts)
  FACTORY_OPENCLAW_AGENTS           comma-separated agent ids (default "main")
  FACTORY_OPENCLAW_ALLOW_EXEC       "1" lets agents run commands on this machine (OpenClaw's exec tools);
                                    off by default (gateway.config's tool policy)
  FACTORY_OPENCLAW_GATEWAY_TOKEN    the gateway's auth token (entrypoint.sh makes one per boot)
  OPENCLAW_GATEWAY_PORT             loopback port (default 18789)
  OPENCLAW_STATE_DIR                state directory (default /data/openclaw)
  OPENCLAW_CONFIG_PATH              where to write (default $OPENCLAW_STATE_DIR/openclaw.json)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pydantic import SecretStr, ValidationError

from gateway.config import TOKEN_ENV, AgentSpec, CompatibleModel, HostedModel, ModelChoice, gateway_config, gateway_env

_HOSTED_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}


def _model(env: dict[str, str]) -> ModelChoice:
    name = env.get("FACTORY_OPENCLAW_MODEL", "").strip()
    if not name:
        raise SystemExit("FACTORY_OPENCLAW_MODEL: required (e.g. openai/gpt-5.5)")
    base_url = env.get("FACTORY_OPENCLAW_MODEL_BASE_URL", "").strip()
    if base_url:
        return CompatibleModel(
            base_url=base_url,
            model_id=name,
            provider_id="compatible",
            api_key=SecretStr(env.get("FACTORY_OPENCLAW_MODEL_API_KEY") or "unused-private-host"),
        )
    provider, _, model = name.partition("/")
    key_env = _HOSTED_KEYS.get(provider)
    if key_env is None or not model:
        raise SystemExit(f"FACTORY_OPENCLAW_MODEL: {name!r} is not openai/<model> or anthropic/<model>")
    if not env.get(key_env):
        raise SystemExit(f"{key_env}: required for FACTORY_OPENCLAW_MODEL={name}")
    return HostedModel(provider=provider, model=model, api_key=SecretStr(env[key_env]))  # type: ignore[arg-type]


def write_config(env: dict[str, str]) -> None:
    state_dir = Path(env.get("OPENCLAW_STATE_DIR") or "/data/openclaw")
    target = Path(env.get("OPENCLAW_CONFIG_PATH") or state_dir / "openclaw.json")
    agents = tuple(a.strip() for a in (env.get("FACTORY_OPENCLAW_AGENTS") or "main").split(",") if a.strip())
    try:
        config = gateway_config(
            port=int(env.get("OPENCLAW_GATEWAY_PORT") or 18789),
            state_dir=state_dir,
            agents=tuple(AgentSpec(id=agent) for agent in agents),
            model=_model(env),
            allow_host_exec=env.get("FACTORY_OPENCLAW_ALLOW_EXEC", "").strip() == "1",
        )
    except (ValidationError, ValueError) as exc:
        raise SystemExit(f"gateway config: {exc}") from None
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    target.chmod(0o600)
    print(f"gateway config written to {target}", file=sys.stderr)


def exec_gateway(env: dict[str, str], command: list[str]) -> None:
    """Become the gateway process, with nothing of the container's environment but what it needs."""
    token = env.get(TOKEN_ENV, "")
    if not command or not token:
        raise SystemExit(f"usage: {TOKEN_ENV}=… gateway_config.py exec COMMAND [ARGS…]")
    child = gateway_env(env, SecretStr(token), _model(env))
    os.execvpe(command[0], command, child)  # noqa: S606 - the command is the entrypoint's own


def main(argv: list[str]) -> None:
    env = dict(os.environ)
    if argv[:1] == ["exec"]:
        exec_gateway(env, argv[1:])
    else:
        write_config(env)


if __name__ == "__main__":
    main(sys.argv[1:])
