"""Mission Control accounts over the factory Convex module (a part of ConvexStore).

The module checks the service token on every runtime call (it keeps no session), so the handle
:meth:`AccountFunctions.open_account` returns sends the account id and the token with each one;
the module filters every read and write by that account (convex/factory/runtime.ts).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from contracts.models import to_wire
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


class _Calls:
    if TYPE_CHECKING:  # provided by the store this is mixed into (ConvexStore)

        async def _query(self, function: str, args: Mapping[str, Any] | None = None) -> Any: ...

        async def _mutation(self, function: str, args: Mapping[str, Any] | None = None, *, retry: bool) -> Any: ...


class AccountFunctions(_Calls):
    """The runtime role's operator side (contracts.roles.runtime.AccountStore)."""

    async def account_put(self, account: Account) -> Account:
        args = {"accountId": account.account_id, "name": account.name, "active": account.active}
        return Account.model_validate(await self._mutation("accountPut", args, retry=True))

    async def account_token(self, account_id: str, token_hash: str) -> bool:
        args = {"accountId": account_id, "tokenHash": token_hash}
        return bool(await self._mutation("accountToken", args, retry=True))

    async def accounts(self) -> list[Account]:
        return [Account.model_validate(a) for a in await self._query("accounts")]

    async def account_view(self, account_id: str, limit: int = 50) -> AccountView | None:
        found = await self._query("accountView", {"accountId": account_id, "limit": limit})
        return None if found is None else AccountView.model_validate(found)

    async def runtime_agent_put(self, agent: RuntimeAgent) -> RuntimeAgent:
        wire = to_wire(agent.model_copy(update={"heartbeat_status": None, "last_heartbeat_at": None}))
        return RuntimeAgent.model_validate(await self._mutation("runtimeAgentPut", wire, retry=True))

    async def task_put(self, task: Task) -> Task:
        wire = to_wire(task.model_copy(update={"created_at": None}))
        return Task.model_validate(await self._mutation("taskPut", wire, retry=True))

    async def notification_post(self, notification: Notification) -> Notification:
        wire = to_wire(notification.model_copy(update={"created_at": None, "delivered_at": None}))
        return Notification.model_validate(await self._mutation("notificationPost", wire, retry=True))

    async def open_account(self, account_id: str, token: SecretStr) -> ConvexAccount:
        await self._query("accountOpen", {"accountId": account_id, "serviceToken": token.get_secret_value()})
        return ConvexAccount(self, account_id, token)


class ConvexAccount:
    """One account's runtime rows on Convex (contracts.roles.runtime.AccountRuntimeStore)."""

    def __init__(self, store: _Calls, account_id: str, token: SecretStr) -> None:
        self._store = store
        self._id = account_id
        self._token = token

    @property
    def account_id(self) -> str:
        return self._id

    def _bound(self, **args: Any) -> dict[str, Any]:
        return {"accountId": self._id, "serviceToken": self._token.get_secret_value(), **args}

    async def agents(self) -> list[RuntimeAgent]:
        return [RuntimeAgent.model_validate(a) for a in await self._store._query("runtimeAgents", self._bound())]

    async def undelivered(self, limit: int = 50) -> list[Notification]:
        rows = await self._store._query("runtimeUndelivered", self._bound(limit=limit))
        return [Notification.model_validate(n) for n in rows]

    async def for_delivery(self, notification_id: str) -> DeliveryContext | None:
        found = await self._store._query("runtimeForDelivery", self._bound(notificationId=notification_id))
        return None if found is None else DeliveryContext.model_validate(found)

    async def mark_delivered(self, notification_id: str) -> bool:
        args = self._bound(notificationId=notification_id)
        return bool(await self._store._mutation("runtimeMarkDelivered", args, retry=True))

    async def upsert_heartbeat(self, agent_id: str, status: HeartbeatStatus) -> bool:
        args = self._bound(agentId=agent_id, status=status)
        return bool(await self._store._mutation("runtimeUpsertHeartbeat", args, retry=True))

    async def create_from_agent(self, agent_id: str, task_id: str, content: str) -> AgentMessage | None:
        # The id is chosen here, so a retried call finds the first post instead of posting twice.
        args = self._bound(agentId=agent_id, taskId=task_id, content=content, messageId="am_" + secrets.token_hex(12))
        found = await self._store._mutation("runtimeCreateFromAgent", args, retry=True)
        return None if found is None else AgentMessage.model_validate(found)

    async def update_runtime_status(self, status: RuntimeStatus, details: RuntimeDetails | None = None) -> Account:
        args = self._bound(status=status, **(to_wire(details) if details is not None else {}))
        return Account.model_validate(await self._store._mutation("runtimeUpdateStatus", args, retry=True))
