"""Stored text, made inert for the browser: HTML-escaped and with control characters shown.

Message text, history, errors and ids can hold anything: markup (``<script>``), rich markup
(``[red]``), terminal escapes (``ESC[2J``), bidirectional overrides that reorder how a line reads,
and lone surrogates. The template engine escapes HTML (autoescape); :func:`visible` shows every
control character as an escape such as ``\\x1b`` or ``\\u202e`` (the same characters the CLI's
terminal view escapes), so nothing is interpreted and nothing is hidden.

The console's Jinja environment runs every ``{{ … }}`` through :func:`visible` (one line: newlines
shown as ``\\n`` too), so a value rendered without thought is still inert; :func:`multiline` is
for bodies of text, keeping newlines and tabs and marking each escape.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# C0 controls, DEL and C1 controls; the bidirectional embeddings, overrides and isolates; lone
# surrogates (bytes that were not UTF-8).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"  # the byte surrogateescape stood in for
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: object, *, keep: str = "") -> str:
    """``text`` with every control character shown as an escape; ``keep`` names layout
    characters to leave as they are (``"\\n\\t"`` for bodies of text)."""
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), str(text))


def multiline(text: object) -> Markup:
    """A body of text for a ``white-space: pre-wrap`` element: escaped, newlines and tabs kept,
    every other control character shown as a marked escape."""
    out: list[str] = []
    last = 0
    value = str(text)
    for match in _UNSAFE.finditer(value):
        out.append(str(escape(value[last : match.start()])))
        char = match.group()
        out.append(char if char in "\n\t" else f'<span class="ctl">{escape(_escape(char))}</span>')
        last = match.end()
    out.append(str(escape(value[last:])))
    return Markup("".join(out))


def finalize(value: object) -> object:
    """The environment's hook for every ``{{ … }}``: text is made visible (markup we built is ours)."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return visible(value)
