"""What the validation layer costs where it runs most: a lease reference and an enqueue request.

Ids are checked at the edge (``contracts.models.Id``: 1-256 characters, not blank, no control
characters, UTF-8) and message text is not blank; every heartbeat, complete and fail builds a
``LeaseRef`` (three ids) and every enqueue an ``EnqueueRequest`` (five ids and the text).
BASELINE: the same models with plain ``str`` fields, built in this run, so the figure beside each
is only what the checks add. Best of several rounds, in microseconds per model.
"""

from __future__ import annotations

import time
import timeit
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from contracts.models import EnqueueRequest, LeaseRef, WireModel

ROUNDS, NUMBER = 7, 20_000
ENQUEUE = {
    "conversationId": "telegram:123456789",
    "agentKey": "default",
    "payload": {
        "provider": "telegram",
        "providerUserId": "123456789",
        "messageText": "hello there, how are you today? " * 4,
        "externalMessageId": "tg-4242",
    },
}
LEASE = {"worker_id": "local-1a22e082e2e1da7cd63", "message_id": "msg_71ec17ce2d928f342a6de5bb", "lease_id": "Xk3_9f"}


class _PlainLease(WireModel):
    worker_id: str
    message_id: str
    lease_id: str


class _PlainPayload(WireModel):
    provider: str
    provider_user_id: str
    message_text: str
    external_message_id: str | None = None


class _PlainEnqueue(WireModel):
    conversation_id: str
    agent_key: str
    payload: _PlainPayload
    priority: int = Field(default=50, ge=0, le=100)
    max_attempts: int = Field(default=5, ge=1, le=1000)


def _best_us(build: Callable[[], Any]) -> float:
    return min(timeit.repeat(build, number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e6


def _row(name: str, ours: type[BaseModel], plain: type[BaseModel], data: dict[str, Any]) -> None:
    mine, base = _best_us(lambda: ours.model_validate(data)), _best_us(lambda: plain.model_validate(data))
    print(f"{name:<16} {mine:8.2f} µs   plain str fields {base:8.2f} µs   +{mine - base:5.2f} µs ({mine / base:.2f}×)")


def run() -> None:
    started = time.perf_counter()
    print("\nValidation at the edge: our models vs the same models with plain str fields (best of rounds)")
    _row("LeaseRef", LeaseRef, _PlainLease, LEASE)
    _row("EnqueueRequest", EnqueueRequest, _PlainEnqueue, ENQUEUE)
    print(f"[{time.perf_counter() - started:.1f} s wall]")
