"""When each agent's heartbeat is due, and what its last one says about the agent: pure.

Slot ``k`` of an agent starts at ``start + k * interval``; its heartbeat is due at the slot's start
plus a jitter in ``[0, JITTER_MS)`` drawn from an injected random source, so the account's
agents do not all wake the model at once. At a due time the heartbeat is enqueued unless the
agent is busy (anything of its session queued or in flight: a queued heartbeat counts, so two
are never queued at once) — then the slot is skipped. A heartbeat still unsettled when the next
one falls due counts as missed, like one dead-lettered: after ``DEGRADED_AFTER`` misses in a row
the agent is degraded, after ``OFFLINE_AFTER`` offline. A completed one makes it online again
(the store records that in the complete's own transaction).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from contracts.models import MessageStatus
from contracts.rules import RandomSource
from contracts.runtime import HeartbeatStatus

JITTER_MS = 60_000
DEGRADED_AFTER = 1
OFFLINE_AFTER = 3
Action = Literal["wait", "enqueue", "skip_busy", "missed"]


@dataclass(frozen=True)
class Beat:
    agent_id: str
    interval_ms: int
    slot_ms: int  # the start of the current slot
    due_ms: int  # the slot's start plus its jitter
    pending: str | None = None  # the queue message of the last heartbeat, until it settles
    misses: int = 0
    overdue: bool = False  # the pending one was counted as missed already (when the next fell due)


@dataclass(frozen=True)
class Step:
    beat: Beat
    action: Action
    # A heartbeat status to record for the agent (only when it changes to degraded/offline).
    report: HeartbeatStatus | None = None


def jitter(rng: RandomSource) -> int:
    return min(int(rng.random() * JITTER_MS), JITTER_MS - 1)


def first_beat(agent_id: str, interval_minutes: int, now_ms: int, rng: RandomSource) -> Beat:
    """The first heartbeat: within the first minute, as the seed staggers its agents."""
    return Beat(agent_id, interval_minutes * 60_000, now_ms, now_ms + jitter(rng))


def _status(misses: int) -> HeartbeatStatus | None:
    if misses >= OFFLINE_AFTER:
        return "offline"
    return "degraded" if misses >= DEGRADED_AFTER else None


def settle(beat: Beat, outcome: MessageStatus | None) -> Step:
    """Take in how the pending heartbeat's message ended (None: no such message any more)."""
    if beat.pending is None or outcome in ("queued", "processing"):
        return Step(beat, "wait")
    if outcome == "done":
        return Step(replace(beat, pending=None, misses=0, overdue=False), "wait")
    if beat.overdue:  # its miss was counted when the next one fell due: not twice
        return Step(replace(beat, pending=None, overdue=False), "wait")
    return _missed(replace(beat, pending=None))


def _missed(beat: Beat) -> Step:
    missed = replace(beat, misses=beat.misses + 1)
    report = _status(missed.misses)
    return Step(missed, "missed", report if report != _status(beat.misses) else None)


def due(beat: Beat, now_ms: int, busy: bool, rng: RandomSource) -> Step:
    """At or after the due time: what to do with this slot, and the beat for the next one.

    Slots that passed while the runtime was not looking (a long outage, a stopped machine) are
    not fired one by one: the next slot is the first one that starts after ``now_ms``."""
    if now_ms < beat.due_ms:
        return Step(beat, "wait")
    slot = beat.slot_ms + ((now_ms - beat.slot_ms) // beat.interval_ms + 1) * beat.interval_ms
    moved = replace(beat, slot_ms=slot, due_ms=slot + jitter(rng))
    if beat.pending is not None:
        return _missed(replace(moved, overdue=True))
    return Step(moved, "skip_busy" if busy else "enqueue")
