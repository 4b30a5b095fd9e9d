"""The store, seen by role: one small Protocol per part of the fleet that uses the store.

A part depends only on the roles it uses (the worker on :class:`WorkerStore`, the autoscaler on
:class:`FleetStore`, …), so a binding can implement the roles it supports and no more: the SQLite
store and the Convex store implement every role; Convex's compat mode for an unmodified
agent-factory deployment implements the worker role and enqueue only (no snapshots).

Method names are the contract's function names in snake_case (``worker_claim`` ↔ ``workerClaim``).
Every time is epoch milliseconds from the store's clock (``now_ms``).
"""

from contracts.roles.agents import AgentStore
from contracts.roles.base import StoreHandle
from contracts.roles.console import ConsoleStore
from contracts.roles.enqueue import EnqueueStore
from contracts.roles.fleet import FleetStore
from contracts.roles.ingress import IngressStore
from contracts.roles.operator import OperatorStore
from contracts.roles.runtime import AccountRuntimeStore, AccountStore
from contracts.roles.schedule import ScheduleStore
from contracts.roles.secrets import SecretStore
from contracts.roles.snapshots import SnapshotStore
from contracts.roles.worker import WorkerStore

__all__ = [
    "AccountRuntimeStore",
    "AccountStore",
    "AgentStore",
    "ConsoleStore",
    "EnqueueStore",
    "FleetStore",
    "IngressStore",
    "OperatorStore",
    "ScheduleStore",
    "SecretStore",
    "SnapshotStore",
    "StoreHandle",
    "WorkerStore",
]
