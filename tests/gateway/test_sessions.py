"""Session keys: one stable, safe OpenClaw session per conversation; one turn at a time per key."""

from __future__ import annotations

import re

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.openclaw.sessions import SessionLocks, conversation_slug, session_key

SLUG = re.compile(r"^[a-z0-9_.-]+$")


def test_safe_ids_are_kept_readable() -> None:
    assert session_key("main", "tg-12345") == "agent:main:conv-tg-12345"
    assert session_key("sales_bot", "a_b-c") == "agent:sales_bot:conv-a_b-c"


def test_ids_that_differ_only_by_case_do_not_collide() -> None:
    upper, lower = conversation_slug("Chat-A"), conversation_slug("chat-a")
    assert lower == "chat-a"
    assert upper.startswith("chat-a.")
    assert upper != lower
    assert upper == upper.lower()


def test_unsafe_characters_are_replaced_and_hashed() -> None:
    slug = conversation_slug("telegram:42/thread 7")
    assert re.fullmatch(r"telegram-42-thread-7\.[0-9a-f]{16}", slug)


def test_reserved_shapes_stay_inside_the_conversation_namespace() -> None:
    # "main" is the agent's heartbeat session and "cron:" a reserved namespace in OpenClaw.
    assert session_key("main", "main") == "agent:main:conv-main"
    assert session_key("main", "cron:job").startswith("agent:main:conv-cron-job.")


def test_long_and_symbol_only_ids_get_bounded_slugs() -> None:
    assert len(conversation_slug("x" * 500)) <= 40 + 1 + 16
    assert re.fullmatch(r"[0-9a-f]{16}", conversation_slug("💬"))


def test_slug_is_stable() -> None:
    assert conversation_slug("Über Chat") == conversation_slug("Über Chat")


@pytest.mark.parametrize("agent", ["Main", "", "-x", "a" * 65, "a:b"])
def test_agent_id_must_be_canonical(agent: str) -> None:
    with pytest.raises(ValueError, match="agent id"):
        session_key(agent, "c")


def test_empty_conversation_id_is_refused() -> None:
    with pytest.raises(ValueError, match="conversation id"):
        session_key("main", "")


@given(st.text(min_size=1, max_size=120), st.text(min_size=1, max_size=120))
def test_distinct_ids_get_distinct_safe_slugs(a: str, b: str) -> None:
    assert SLUG.fullmatch(conversation_slug(a))
    if a != b:
        assert conversation_slug(a) != conversation_slug(b)


@pytest.mark.anyio
async def test_session_locks_serialize_one_key_and_forget_idle_keys() -> None:
    locks = SessionLocks()
    events: list[str] = []

    async def turn(key: str, name: str) -> None:
        async with locks.hold(key):
            events.append(f"start {name}")
            await anyio.sleep(0.02)
            events.append(f"end {name}")

    async with anyio.create_task_group() as tg:
        tg.start_soon(turn, "agent:main:conv-A", "a1")
        await anyio.sleep(0.001)
        tg.start_soon(turn, "agent:main:conv-a", "a2")  # same session once lower-cased
        tg.start_soon(turn, "agent:main:conv-b", "b1")
    assert events.index("end a1") < events.index("start a2")
    assert events.index("start b1") < events.index("end a1")
    assert len(locks) == 0
