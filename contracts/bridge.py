"""An agent's bridge settings, resolved with upstream agent-factory's precedence (pure).

Each field is taken from the first of: the profile's ``bridgeConfig``, the secret
``agent-bridge.<field>.<agentKey>``, the secret ``agent-bridge.<field>`` (global), and last the
worker's environment. The store does the first three while it builds the hydration bundle
(:func:`resolve_bridge`); the worker adds its environment (:func:`complete_bridge`). When no base
URL is found by then, it is looked up by app key in the ``appBaseUrlMapJson`` map, as upstream does.
Both stores use this module: the Convex module only sends the secrets of :func:`bridge_secret_refs`
sealed (it holds no key), and its Python binding opens them and calls :func:`resolve_bridge`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import SecretStr

from contracts.models import BridgeConfig, ResolvedBridge

SECRET_PREFIX = "agent-bridge"
# Wire field names, as the secrets spell them.
FIELDS = ("baseUrl", "serviceId", "serviceKey", "appKey", "appBaseUrlMapJson")


def bridge_secret_refs(agent_key: str, config: BridgeConfig) -> list[str]:
    """Every secret ref the store may read to resolve this agent's bridge, in lookup order."""
    refs = [ref for ref in (config.service_key_secret_ref, config.app_base_url_map_json_secret_ref) if ref]
    for field in FIELDS:
        refs += [f"{SECRET_PREFIX}.{field}.{agent_key}", f"{SECRET_PREFIX}.{field}"]
    return refs


def resolve_bridge(agent_key: str, config: BridgeConfig, secrets: Mapping[str, str]) -> ResolvedBridge:
    """The profile's fields, then per-agent secrets, then global secrets (``secrets``: ref → value)."""

    def pick(field: str, from_profile: str | None, ref: str | None = None) -> str | None:
        for candidate in (
            from_profile,
            secrets.get(ref) if ref else None,
            secrets.get(f"{SECRET_PREFIX}.{field}.{agent_key}"),
            secrets.get(f"{SECRET_PREFIX}.{field}"),
        ):
            if candidate is not None and candidate.strip():
                return candidate.strip()
        return None

    key = pick("serviceKey", None, config.service_key_secret_ref)
    app_map = pick("appBaseUrlMapJson", None, config.app_base_url_map_json_secret_ref)
    return ResolvedBridge(
        base_url=pick("baseUrl", config.base_url),
        service_id=pick("serviceId", config.service_id),
        service_key=SecretStr(key) if key else None,
        app_key=pick("appKey", config.app_key),
        app_base_url_map_json=SecretStr(app_map) if app_map else None,
        allowed_hosts=list(config.allowed_hosts),
    )


def complete_bridge(resolved: ResolvedBridge, env: Mapping[str, str | None]) -> ResolvedBridge:
    """Fill what the store left open from the worker's environment (``env``: wire field → value),
    then the base URL from the app map by app key."""

    def env_value(field: str) -> str | None:
        value = env.get(field)
        return value.strip() if value and value.strip() else None

    key = resolved.service_key or (SecretStr(v) if (v := env_value("serviceKey")) else None)
    filled = resolved.model_copy(
        update={
            "base_url": resolved.base_url or env_value("baseUrl"),
            "service_id": resolved.service_id or env_value("serviceId"),
            "service_key": key,
            "app_key": resolved.app_key or env_value("appKey"),
        }
    )
    if filled.base_url is None and filled.app_key and filled.app_base_url_map_json is not None:
        filled = filled.model_copy(update={"base_url": _from_map(filled.app_base_url_map_json, filled.app_key)})
    return filled


def _from_map(raw: SecretStr, app_key: str) -> str | None:
    try:
        table = json.loads(raw.get_secret_value())
    except ValueError:
        return None
    value = table.get(app_key) if isinstance(table, dict) else None
    return value.strip() if isinstance(value, str) and value.strip() else None


def missing_fields(resolved: ResolvedBridge) -> list[str]:
    """What a bridge call still lacks, by wire name (upstream: "Agent Bridge config incompleta")."""
    present = {
        "baseUrl": resolved.base_url,
        "serviceId": resolved.service_id,
        "serviceKey": resolved.service_key,
        "appKey": resolved.app_key,
    }
    return [name for name, value in present.items() if value is None]
