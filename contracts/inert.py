"""Which characters of text we did not write are never shown as they are, and how they are shown.

One rule for every view of stored text: the CLI's terminal (:mod:`factory.safe_text`) and the
operator console's browser pages (:mod:`ingress.console.text`). Control characters (C0, DEL, C1),
the bidirectional embeddings, overrides and isolates (they reorder how a line reads) and lone
surrogates (bytes that were not UTF-8, from surrogateescape) become escapes such as ``\\x1b``,
``\\u202e`` and ``\\xff``; a backslash is left alone.
"""

from __future__ import annotations

import re

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_char(char: str) -> str:
    """The visible escape that stands for one :data:`UNSAFE` character."""
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte surrogateescape stood in for
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: object, *, keep: str = "") -> str:
    """``text`` with every :data:`UNSAFE` character shown as its escape; ``keep`` names harmless
    layout characters to leave as they are (``"\\n\\t"`` for bodies of text)."""
    return UNSAFE.sub(lambda m: m.group() if m.group() in keep else escape_char(m.group()), str(text))
