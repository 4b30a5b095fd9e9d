"""Turn store settings into a Store: a SQLite path, or a Convex deployment URL."""

from __future__ import annotations

from pathlib import Path

from contracts.store import Store
from factory.settings import StoreSettings


def open_store(settings: StoreSettings) -> Store:
    if settings.is_convex:
        from contracts.convex.store import ConvexStore  # imported lazily: SQLite users never need it

        return ConvexStore(
            settings.store,
            auth_token=settings.convex_auth_token,
            deploy_key=settings.convex_deploy_key,
            namespace=settings.convex_namespace,
            timeout_s=settings.store_timeout_s,
            compat=settings.convex_compat or None,
        )
    from contracts.rules import QueuePolicy
    from contracts.sqlite import SqliteStore

    return SqliteStore(
        Path(settings.store).expanduser(),
        synchronous=settings.sqlite_synchronous,
        doorbell=settings.sqlite_doorbell,
        policy=QueuePolicy(lease_ttl_ms=int(settings.lease_ttl_s * 1000)),
    )
