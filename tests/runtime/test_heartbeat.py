"""Heartbeat scheduling on an injected clock: jitter inside its bounds, never two queued at once."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from contracts.models import MessageStatus
from contracts.runtime import RuntimeAgent
from runtime import heartbeat
from runtime.heartbeat import JITTER_MS, first_beat
from runtime.messages import heartbeat_request

START = 1_700_000_000_000
OUTCOMES: list[MessageStatus | None] = [None, "queued", "processing", "done", "dead_letter"]

# One tick of the runtime's loop: the clock moves on, the pending heartbeat (if any) settles or
# not, the agent is busy or not.
ticks = st.lists(
    st.tuples(
        st.integers(0, 40 * 60_000),
        st.sampled_from(OUTCOMES),
        st.booleans(),
    ),
    max_size=60,
)


@given(seed=st.integers(0, 2**32), minutes=st.integers(1, 120), steps=ticks)
def test_heartbeats_fire_once_per_slot_with_jitter_in_bounds_and_never_overlap(
    seed: int, minutes: int, steps: list[tuple[int, MessageStatus | None, bool]]
) -> None:
    rng = random.Random(seed)
    beat = first_beat("a1", minutes, START, rng)
    assert START <= beat.due_ms < START + JITTER_MS
    now, message = START, 0
    fired: list[int] = []
    for moved, outcome, busy in steps:
        now += moved
        if beat.pending is not None and outcome is not None:
            beat = heartbeat.settle(beat, outcome).beat
        before = beat
        step = heartbeat.due(beat, now, busy, rng)
        beat = step.beat
        if step.action == "wait":
            assert beat == before and now < before.due_ms
            continue
        # The next slot is ahead of now, on the interval grid, its due time jittered inside it.
        assert now < beat.slot_ms <= now + beat.interval_ms and (beat.slot_ms - START) % beat.interval_ms == 0
        assert beat.slot_ms <= beat.due_ms < beat.slot_ms + JITTER_MS
        if step.action == "enqueue":
            assert before.pending is None and not busy  # never two queued, never while busy
            message += 1
            beat = replace(beat, pending=f"m{message}")
            fired.append(now)
        if step.action == "missed":
            assert before.pending is not None and beat.misses == before.misses + 1
    assert fired == sorted(set(fired))  # one heartbeat per tick at most, in time order


def test_missed_heartbeats_degrade_then_take_the_agent_offline_and_a_completed_one_clears_it() -> None:
    rng = random.Random(1)
    beat = heartbeat.Beat("a1", 60_000, START, START, pending="m1")
    reports = []
    for n in range(4):
        step = heartbeat.due(beat, beat.due_ms, False, rng)
        beat = step.beat
        reports.append(step.report)
        assert (step.action, beat.misses) == ("missed", n + 1)
    assert reports == ["degraded", None, "offline", None]
    cleared = heartbeat.settle(beat, "done").beat
    assert (cleared.pending, cleared.misses) == (None, 0)
    late = heartbeat.settle(beat, "dead_letter")  # already counted when the next one fell due
    assert (late.action, late.beat.misses, late.beat.pending) == ("wait", 4, None)
    dead = heartbeat.settle(heartbeat.Beat("a1", 60_000, START, START, pending="m2"), "dead_letter")
    assert (dead.action, dead.report, dead.beat.pending) == ("missed", "degraded", None)


def test_a_long_pause_fires_one_heartbeat_not_every_slot_it_missed() -> None:
    rng = random.Random(2)
    beat = first_beat("a1", 5, START, rng)
    step = heartbeat.due(beat, START + 3 * 3_600_000, False, rng)
    assert step.action == "enqueue"
    assert step.beat.slot_ms == START + 3 * 3_600_000 + 5 * 60_000 - (3 * 3_600_000) % (5 * 60_000)


def test_a_heartbeat_is_deduped_on_its_slot_and_spends_one_attempt() -> None:
    agent = RuntimeAgent(agent_id="acme-jarvis", account_id="acme", name="Jarvis", slug="jarvis")
    request = heartbeat_request(agent, START, START + 5)
    assert (request.conversation_id, request.agent_key, request.max_attempts) == ("agent:jarvis:acme", "acme.jarvis", 1)
    assert request.payload.external_message_id == f"heartbeat:acme-jarvis:{START}"
    assert "NO_REPLY" in request.payload.message_text and "## Heartbeat Check" in request.payload.message_text
