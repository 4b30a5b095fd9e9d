"""The gateway's model, chosen at the edge from the provider keys in the environment."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

from contracts.errors import InvalidInput
from factory.settings import RunSettings
from gateway.config import HostedModel

OPENAI_DEFAULT_MODEL = "gpt-5.4-mini"
ANTHROPIC_DEFAULT_MODEL = "claude-haiku-4-5"


@dataclass(frozen=True)
class ModelPlan:
    """The gateway's model: a hosted one from a provider key, or None for the offline stub."""

    hosted: HostedModel | None
    label: str


def choose_model(settings: RunSettings) -> ModelPlan:
    """OPENAI_API_KEY, else ANTHROPIC_API_KEY, else the offline stub; the label never holds a key."""
    keys: list[tuple[str, SecretStr | None, str]] = [
        ("openai", settings.openai_api_key, OPENAI_DEFAULT_MODEL),
        ("anthropic", settings.anthropic_api_key, ANTHROPIC_DEFAULT_MODEL),
    ]
    for provider, key, default in keys:
        if key is None:
            continue
        name = _model_name(settings.model, provider, default)
        hosted = HostedModel.model_validate({"provider": provider, "model": name, "api_key": key})
        return ModelPlan(hosted, f"{provider}/{name} (from {hosted.key_env})")
    ignored = "; FACTORY_RUN_MODEL ignored" if settings.model else ""
    return ModelPlan(None, f"offline stub (no OPENAI_API_KEY / ANTHROPIC_API_KEY set{ignored})")


def _model_name(wanted: str | None, provider: str, default: str) -> str:
    if not wanted:
        return default
    prefix, slash, rest = wanted.partition("/")
    if not slash:
        return wanted
    if prefix != provider or not rest:
        raise InvalidInput("FACTORY_RUN_MODEL", f"{wanted!r} is not a {provider} model; the key in use is {provider}'s")
    return rest
