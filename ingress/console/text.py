"""Stored text, made inert for the browser: HTML-escaped and with control characters shown.

Message text, history, errors and ids can hold anything: markup (``<script>``), rich markup
(``[red]``), terminal escapes (``ESC[2J``), bidirectional overrides that reorder how a line reads,
and lone surrogates. The template engine escapes HTML (autoescape); :func:`visible` shows every
control character as an escape such as ``\\x1b`` or ``\\u202e`` (:mod:`contracts.inert`: the
same rule as the CLI's terminal view), so nothing is interpreted and nothing is hidden.

The console's Jinja environment runs every ``{{ … }}`` through :func:`visible` (one line: newlines
shown as ``\\n`` too), so a value rendered without thought is still inert; :func:`multiline` is
for bodies of text, keeping newlines and tabs and marking each escape.
"""

from __future__ import annotations

from markupsafe import Markup, escape

from contracts.inert import UNSAFE, escape_char, visible

__all__ = ["finalize", "multiline", "visible"]


def multiline(text: object) -> Markup:
    """A body of text for a ``white-space: pre-wrap`` element: escaped, newlines and tabs kept,
    every other control character shown as a marked escape."""
    out: list[str] = []
    last = 0
    value = str(text)
    for match in UNSAFE.finditer(value):
        out.append(str(escape(value[last : match.start()])))
        char = match.group()
        out.append(char if char in "\n\t" else f'<span class="ctl">{escape(escape_char(char))}</span>')
        last = match.end()
    out.append(str(escape(value[last:])))
    return Markup("".join(out))


def finalize(value: object) -> object:
    """The environment's hook for every ``{{ … }}``: text is made visible (markup we built is ours)."""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return visible(value)
