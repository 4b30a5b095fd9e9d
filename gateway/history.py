"""Earlier turns for a gateway that has never seen the conversation: a delimited history preamble.

OpenClaw 2026.9.6 has no way to load a transcript into a session (``chat.inject`` appends one
assistant note to a session that must already exist), so a session seeded on a new machine gets
the conversation so far as a clearly marked preamble on its first turn, once; from then on the
gateway keeps the history itself. The stub model reads the same markers to report what it saw.
"""

from __future__ import annotations

from collections.abc import Sequence

OPEN = "[Conversation so far — earlier turns of this chat, restored for context. Do not answer them.]"
CLOSE = "[End of the conversation so far. The new message follows.]"
# Keep the preamble well inside OpenClaw's prompt budget; the newest turns matter most.
MAX_CHARS = 24_000
_LABELS = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}


def with_history(turns: Sequence[tuple[str, str]], message: str, *, max_chars: int = MAX_CHARS) -> str:
    """``message`` preceded by the ``(role, text)`` turns (oldest first), newest kept within ``max_chars``."""
    lines: list[str] = []
    used = 0
    for role, text in reversed(turns):
        line = f"{_LABELS.get(role, role.title())}: {' '.join(text.split())}"
        if used + len(line) > max_chars:
            lines.append(f"({len(turns) - len(lines)} earlier turn(s) left out)")
            break
        lines.append(line)
        used += len(line) + 1
    if not lines:
        return message
    return "\n".join([OPEN, *reversed(lines), CLOSE, "", message])


def split_history(text: str) -> tuple[list[tuple[str, str]], str]:
    """The preamble's ``(role, text)`` turns and the message after it; no preamble: ``([], text)``."""
    start = text.find(OPEN)
    end = text.find(CLOSE, start + len(OPEN)) if start >= 0 else -1
    if start < 0 or end < 0:
        return [], text
    turns: list[tuple[str, str]] = []
    roles = {label: role for role, label in _LABELS.items()}
    for line in text[start + len(OPEN) : end].splitlines():
        label, sep, rest = line.partition(": ")
        if sep and label in roles:
            turns.append((roles[label], rest))
    return turns, (text[:start] + text[end + len(CLOSE) :]).strip()
