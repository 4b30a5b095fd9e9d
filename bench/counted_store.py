"""A worker-role store that records every call it passes on: how many store calls a real worker
loop makes per message, on any binding (composition around the real store, not a fake).

``calls`` holds each call's name in order (``worker_claim``, ``worker_complete``, …), so a test
or a benchmark can tell the calls a run made while busy from those of its start and its idle end.
``on_complete`` sees each complete's answer as it returns (a driver waiting for progress, a stop
that lands while the complete was on its way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, overload

from contracts.models import (
    AppendRequest,
    AppendResult,
    ClaimedJob,
    ClaimResult,
    CompleteResult,
    ControlState,
    FailRequest,
    FailResult,
    HistoryMessage,
    HydrationBundle,
    LeaseRef,
    LeaseResult,
    NextClaim,
    ReleaseRequest,
    WorkerRecord,
    WorkerRegistration,
)
from contracts.roles import WorkerStore


class CountedStore:
    """``store``'s worker role, with each call's name appended to ``calls`` before it is sent."""

    def __init__(self, store: WorkerStore, on_complete: Callable[[CompleteResult], None] | None = None) -> None:
        self.store = store
        self.calls: list[str] = []
        self.on_complete = on_complete

    @property
    def name(self) -> str:
        return self.store.name

    async def now_ms(self) -> int:
        self.calls.append("now_ms")
        return await self.store.now_ms()

    async def aclose(self) -> None:
        await self.store.aclose()

    async def worker_register(self, registration: WorkerRegistration) -> WorkerRecord:
        self.calls.append("worker_register")
        return await self.store.worker_register(registration)

    async def worker_control_state(self, worker_id: str) -> ControlState:
        self.calls.append("worker_control_state")
        return await self.store.worker_control_state(worker_id)

    @overload
    async def worker_claim(self, worker_id: str, conversation_id: str | None = None) -> ClaimedJob | None: ...

    @overload
    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: Literal[True]
    ) -> ClaimResult: ...

    async def worker_claim(
        self, worker_id: str, conversation_id: str | None = None, *, with_bundle: bool = False
    ) -> ClaimedJob | ClaimResult | None:
        self.calls.append("worker_claim")
        if with_bundle:
            return await self.store.worker_claim(worker_id, conversation_id, with_bundle=True)
        return await self.store.worker_claim(worker_id, conversation_id)

    async def worker_heartbeat(self, lease: LeaseRef) -> LeaseResult:
        self.calls.append("worker_heartbeat")
        return await self.store.worker_heartbeat(lease)

    async def worker_complete(
        self,
        lease: LeaseRef,
        *,
        history: Sequence[HistoryMessage] | None = None,
        claim_next: NextClaim | None = None,
    ) -> CompleteResult:
        self.calls.append("worker_complete")
        answer = await self.store.worker_complete(lease, history=history, claim_next=claim_next)
        if self.on_complete is not None:
            self.on_complete(answer)
        return answer

    async def worker_fail(self, request: FailRequest) -> FailResult:
        self.calls.append("worker_fail")
        return await self.store.worker_fail(request)

    async def worker_release(self, request: ReleaseRequest) -> LeaseResult:
        self.calls.append("worker_release")
        return await self.store.worker_release(request)

    async def worker_hydration_bundle(self, message_id: str, workspace_id: str = "default") -> HydrationBundle | None:
        self.calls.append("worker_hydration_bundle")
        return await self.store.worker_hydration_bundle(message_id, workspace_id)

    async def worker_append_conversation_messages(self, request: AppendRequest) -> AppendResult:
        self.calls.append("worker_append_conversation_messages")
        return await self.store.worker_append_conversation_messages(request)

    async def wait_for_work(self, timeout_s: float, conversation_id: str | None = None) -> bool:
        self.calls.append("wait_for_work")
        return await self.store.wait_for_work(timeout_s, conversation_id)


if __debug__:
    _: type[WorkerStore] = CountedStore  # the wrapper keeps the whole worker role
