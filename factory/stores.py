"""Turn store settings into a store binding: a SQLite path, or a Convex deployment URL.

Parts of the fleet see only the roles they use (``contracts.roles``). Here, at the edge, a command
opens the binding that implements them, and a command that needs more than an upstream
agent-factory deployment offers is refused once, with one line, before anything runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from contracts.secrets import SecretBox
from contracts.sqlite import SqliteStore
from factory.settings import StoreSettings

if TYPE_CHECKING:
    # Imported where used: SQLite users never load the Convex binding (httpx, tenacity).
    from contracts.convex.compat import AgentFactoryCompatStore
    from contracts.convex.store import ConvexStore

# Every role: the embedded store and the factory Convex module.
FullStore: TypeAlias = "SqliteStore | ConvexStore"
# The worker role and enqueue at least: compat mode (an unmodified upstream deployment) included.
AnyStore: TypeAlias = "SqliteStore | ConvexStore | AgentFactoryCompatStore"


def open_store(settings: StoreSettings, *, create: bool = True, workspace_id: str = "default") -> AnyStore:
    """The binding the settings name; in compat mode, the worker role and enqueue only.

    ``create=False``: a SQLite file that does not exist is refused, not created (read-only commands).
    ``workspace_id``: the workspace compat mode hydrates from and appends history to (a claim with
    its bundle, a complete with its history)."""
    if settings.is_convex and settings.convex_compat:
        from contracts.convex.compat import AgentFactoryCompatStore

        return AgentFactoryCompatStore(
            settings.store,
            compat=settings.convex_compat,
            auth_token=settings.convex_auth_token,
            deploy_key=settings.convex_deploy_key,
            namespace=settings.convex_namespace,
            timeout_s=settings.store_timeout_s,
            workspace_id=workspace_id,
        )
    return open_full_store(settings, role="every", create=create)


def open_full_store(settings: StoreSettings, *, role: str, create: bool = True) -> FullStore:
    """A binding with every role; ``role`` names what the command needs, for the refusal."""
    if settings.is_convex:
        if settings.convex_compat:
            from contracts.convex.compat import UnsupportedByCompat

            raise UnsupportedByCompat(settings.store, role)
        from contracts.convex.store import ConvexStore

        return ConvexStore(
            settings.store,
            auth_token=settings.convex_auth_token,
            deploy_key=settings.convex_deploy_key,
            namespace=settings.convex_namespace,
            timeout_s=settings.store_timeout_s,
            secrets_box=secrets_box(settings),
        )
    return SqliteStore(
        Path(settings.store).expanduser(),
        synchronous=settings.sqlite_synchronous,
        doorbell=settings.sqlite_doorbell,
        lease_ttl_ms=settings.lease_ttl_ms,
        secrets_box=secrets_box(settings),
        create=create,
    )


def secrets_box(settings: StoreSettings) -> SecretBox | None:
    """The key secrets are sealed with (FACTORY_SECRETS_KEY), if set; a malformed key is one line."""
    return SecretBox.from_settings(settings.secrets_key, settings.secrets_previous_keys)
