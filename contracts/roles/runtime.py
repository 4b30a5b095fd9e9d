"""The runtime role: Mission Control accounts, and one account's runtime bound to its service token.

Two protocols, so that a cross-account read is impossible by construction: the operator's
:class:`AccountStore` creates accounts, agents, tasks and notifications and hands out service
tokens; :meth:`AccountStore.open_account` checks a token and returns an
:class:`AccountRuntimeStore` bound to that account, whose calls take no account id at all. Every
one of them is filtered by the bound account, so an id from another account finds nothing.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from contracts.roles.base import StoreHandle
from contracts.runtime import (
    Account,
    AccountView,
    AgentMessage,
    DeliveryContext,
    HeartbeatStatus,
    Notification,
    RuntimeAgent,
    RuntimeDetails,
    RuntimeStatus,
    Task,
)


@runtime_checkable
class AccountRuntimeStore(Protocol):
    """One account's rows, as its runtime sees them (the seed's ``service.*`` functions)."""

    @property
    def account_id(self) -> str: ...

    async def agents(self) -> list[RuntimeAgent]:
        """``agents.list``: the account's agents, by slug."""
        ...

    async def undelivered(self, limit: int = 50) -> list[Notification]:
        """``notifications.listUndeliveredForAccount``: oldest first."""
        ...

    async def for_delivery(self, notification_id: str) -> DeliveryContext | None:
        """``notifications.getForDelivery``; None for another account's notification."""
        ...

    async def mark_delivered(self, notification_id: str) -> bool:
        """False when it was delivered already, or is not this account's."""
        ...

    async def upsert_heartbeat(self, agent_id: str, status: HeartbeatStatus) -> bool: ...

    async def create_from_agent(self, agent_id: str, task_id: str, content: str) -> AgentMessage | None:
        """``messages.createFromAgent``; None when the agent or the task is not this account's."""
        ...

    async def update_runtime_status(self, status: RuntimeStatus, details: RuntimeDetails | None = None) -> Account: ...


@runtime_checkable
class AccountStore(StoreHandle, Protocol):
    async def account_put(self, account: Account) -> Account:
        """Create an account, or rename / (de)activate one; its runtime status is kept."""
        ...

    async def account_token(self, account_id: str, token_hash: str) -> bool:
        """Replace the account's service token (its sha256); False when there is no such account."""
        ...

    async def accounts(self) -> list[Account]: ...

    async def account_view(self, account_id: str, limit: int = 50) -> AccountView | None: ...

    async def runtime_agent_put(self, agent: RuntimeAgent) -> RuntimeAgent:
        """Create or replace an agent (by id); its account must exist and its slug be free there."""
        ...

    async def task_put(self, task: Task) -> Task: ...

    async def notification_post(self, notification: Notification) -> Notification:
        """Post a notification for an agent (and task) of the same account; a repeated id is kept."""
        ...

    async def open_account(self, account_id: str, token: SecretStr) -> AccountRuntimeStore:
        """The account's rows bound to it; raises :class:`~contracts.runtime.AccessRefused`."""
        ...
