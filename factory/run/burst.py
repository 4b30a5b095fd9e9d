"""The demo burst: who writes what, and how it goes into the queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import anyio

from contracts.models import EnqueueRequest, MessagePayload
from factory.run.state import RunState, Tracked
from factory.stores import FullStore

BURST_WINDOW_S = 6.0  # the burst is spread over at most this long
BURST_INTERVAL_S = 0.25


_NAMES = ("alice", "bao", "carmen", "dmitri", "emeka", "fatima", "giulia", "hiro", "ines", "jonas", "kofi", "lena")
_TEXTS = (
    "Hi! Can you summarise what we agreed in yesterday's planning call?",
    "What's a good name for a team offsite in March?",
    "Remind me how to rotate the API key for the staging bot.",
    "Draft a two-line reply thanking the vendor for the quick fix.",
    "Which is cheaper per month: three small VMs or one large one?",
    "Translate 'see you at the standup' into Spanish, please.",
    "Give me three bullet points for the v2.4 release notes.",
    "Can you check my math: what is 18% of 2,450?",
    "What should I pack for a rainy weekend in Edinburgh?",
    "Write a haiku about a queue that never loses a message.",
    "Roughly how long should a good code review take?",
    "Suggest a polite way to decline a meeting invite.",
    "Explain in one paragraph what an idempotency key is.",
    "What's the difference between a lease and a lock?",
    "Any tips for keeping a standup under ten minutes?",
    "Turn this into a checklist: back up, migrate, verify, announce.",
    "Can you recommend a beginner's book on distributed systems?",
    "Summarise the pros and cons of autoscaling to zero.",
    "Write a friendly reminder that the invoices are due on Friday.",
    "Thanks, that's all for now!",
)


@dataclass(frozen=True)
class BurstMessage:
    conversation_id: str
    user: str
    text: str


def demo_burst(conversations: int, messages: int) -> list[BurstMessage]:
    """``messages`` user messages spread round-robin over ``conversations`` conversations."""
    burst = []
    for i in range(messages):
        c, k = i % conversations, i // conversations
        user = _NAMES[c] if c < len(_NAMES) else f"user{c + 1}"
        burst.append(BurstMessage(f"demo:{user}", user, _TEXTS[(c * 3 + k) % len(_TEXTS)]))
    return burst


async def enqueue_burst(store: FullStore, state: RunState, burst: Sequence[BurstMessage], run_id: str) -> None:
    interval = min(BURST_INTERVAL_S, BURST_WINDOW_S / max(1, len(burst)))
    for i, item in enumerate(burst):
        if i:
            await anyio.sleep(interval)
        request = EnqueueRequest(
            conversation_id=item.conversation_id,
            agent_key="default",
            payload=MessagePayload(
                provider="app",
                provider_user_id=item.user,
                message_text=item.text,
                external_message_id=f"factory-run-{run_id}-{i}",
            ),
        )
        message_id = await store.enqueue(request)
        record = await store.get_message(message_id)
        enqueued_at = record.enqueued_at if record is not None else await store.now_ms()
        state.messages[message_id] = Tracked(message_id, item.conversation_id, item.text, enqueued_at)
    state.enqueue_done = True
