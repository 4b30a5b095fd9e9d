"""One OpenClaw session per conversation, and one turn at a time per session.

A session key is ``agent:<agentId>:conv-<slug>``. OpenClaw lower-cases session keys and gives
meaning to some of their shapes (``main`` is the agent's heartbeat session; ``cron:``, ``subagent:``
and ``acp:`` are reserved namespaces; ``:thread:`` and ``:run:`` segments are parsed), so a raw
conversation id cannot be pasted in. The ``conv-`` prefix keeps every key out of those namespaces.

The slug is the conversation id itself when it is already safe (lower case ``a-z 0-9 _ -``, up to
64 characters), so keys stay readable. Anything else (upper case, ``:``, ``.``, unicode, very long)
becomes a lower-case sanitized prefix plus ``.`` plus a hash of the exact id. The ``.`` never occurs
in a plain slug, so a hashed slug cannot equal a plain one, and ids that differ only by case get
different hashes instead of colliding in OpenClaw's lower-cased store.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from gateway.config import check_agent_id

_SAFE = re.compile(r"^[a-z0-9_-]{1,64}$")
_UNSAFE_RUN = re.compile(r"[^a-z0-9_-]+")
_PREFIX_CHARS = 40
_HASH_CHARS = 16  # 64 bits: collisions need ~4 billion conversations per agent


def conversation_slug(conversation_id: str) -> str:
    if not conversation_id:
        raise ValueError("conversation id must not be empty")
    if _SAFE.fullmatch(conversation_id):
        return conversation_id
    readable = _UNSAFE_RUN.sub("-", conversation_id.lower()).strip("-")[:_PREFIX_CHARS].strip("-")
    digest = hashlib.sha256(conversation_id.encode("utf-8")).hexdigest()[:_HASH_CHARS]
    return f"{readable}.{digest}" if readable else digest


def session_key(agent_id: str, conversation_id: str) -> str:
    """The stable OpenClaw session key for one conversation with one agent."""
    return f"agent:{check_agent_id(agent_id)}:conv-{conversation_slug(conversation_id)}"


@dataclass
class _Slot:
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    users: int = 0


class SessionLocks:
    """One turn at a time per session key.

    OpenClaw fails concurrent first turns on a new session ("changed while starting work") and
    would interleave later ones, so each Delivery runs a key's turns strictly one after another
    (anyio locks are FIFO: arrival order is kept). Keys are compared as OpenClaw stores them,
    lower-cased. Idle keys are forgotten, so memory follows the number of busy sessions.
    """

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        canonical = key.lower()
        slot = self._slots.setdefault(canonical, _Slot())
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._slots[canonical]

    def __len__(self) -> int:
        return len(self._slots)
