"""The store roles: small, and implemented by the bindings that claim them (checked by mypy here)."""

from __future__ import annotations

import inspect

import pytest

from contracts.convex import AgentFactoryCompatStore, ConvexStore
from contracts.roles import (
    AccountRuntimeStore,
    AccountStore,
    AgentStore,
    ConsoleStore,
    EnqueueStore,
    FleetStore,
    IngressStore,
    OperatorStore,
    ScheduleStore,
    SecretStore,
    SnapshotStore,
    StoreHandle,
    WorkerStore,
)
from contracts.sqlite import SqliteStore

ROLES = (
    WorkerStore,
    EnqueueStore,
    FleetStore,
    OperatorStore,
    AgentStore,
    ScheduleStore,
    IngressStore,
    SecretStore,
    SnapshotStore,
    ConsoleStore,
    AccountStore,
    AccountRuntimeStore,
)


def _every_role(store: SqliteStore | ConvexStore) -> None:
    """Never called: mypy checks that both full bindings implement every role."""
    _w: WorkerStore = store
    _e: EnqueueStore = store
    _f: FleetStore = store
    _o: OperatorStore = store
    _a: AgentStore = store
    _s: ScheduleStore = store
    _i: IngressStore = store
    _secrets: SecretStore = store
    _snap: SnapshotStore = store
    _console: ConsoleStore = store
    _accounts: AccountStore = store


def _compat_roles(store: AgentFactoryCompatStore) -> None:
    """Never called: mypy checks that compat mode plays the worker role and enqueue."""
    _w: WorkerStore = store
    _e: EnqueueStore = store


def _methods(role: type) -> set[str]:
    own = {name for name, _ in inspect.getmembers(role) if not name.startswith("_")}
    return own - {name for name, _ in inspect.getmembers(StoreHandle) if not name.startswith("_")}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.__name__)
def test_every_role_is_small_enough_to_read_at_a_glance(role: type) -> None:
    assert 1 <= len(_methods(role)) <= 12


def test_compat_mode_implements_only_what_upstream_has() -> None:
    missing = {role.__name__: sorted(_methods(role) - set(dir(AgentFactoryCompatStore))) for role in ROLES}
    assert {name for name, gaps in missing.items() if not gaps} == {"WorkerStore", "EnqueueStore"}
