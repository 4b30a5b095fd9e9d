"""Text we did not write, made inert for an operator's terminal. One home; every command uses it.

Ids, message text, history, agent replies, worker logs and error messages that echo what a user
typed can hold anything: rich markup (``[red]``, ``[/x]``), emoji codes (``:smile:``), terminal
escapes (``ESC]0;title BEL`` renames the window, ``ESC[2J`` clears the screen), bidirectional
overrides that reorder what a line appears to say, and bytes that are not UTF-8. None of it may
be interpreted: it is shown, visibly and literally.

* :data:`out` and :data:`err` are the consoles every command prints through. Markup and emoji codes
  are off, and every string they render passes through :func:`visible` (newlines and tabs kept),
  so a string that slips through unescaped is still inert. Style our own words with ``style=`` or
  :class:`rich.text.Text`, never with markup in a string.
* :func:`visible` shows control characters (C0, DEL, C1), the bidirectional controls and
  undecodable bytes (lone surrogates from non-UTF-8 arguments) as escapes such as ``\\x1b``,
  ``\\u202e`` and ``\\xff``; a backslash is left alone (the rule lives in :mod:`contracts.inert`,
  shared with the operator console's pages).
* :func:`one_line` is :func:`visible` with newlines escaped and a length cap: for error lines and
  table cells.
* :func:`plain` wraps a value in a :class:`~rich.text.Text` for :class:`~rich.table.Table` cells and
  :class:`~rich.text.Text` assembly, where our console's string hook does not run.

Text rich renders itself (JSON documents, our own tables) needs nothing more.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text

from contracts.inert import visible

__all__ = ["ERROR_LINE_LIMIT", "err", "one_line", "out", "plain", "visible"]

ERROR_LINE_LIMIT = 2_000


def one_line(text: object, limit: int = ERROR_LINE_LIMIT) -> str:
    """``text`` visible, on one line, at most ``limit`` characters (an ellipsis marks a cut)."""
    line = visible(text)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def plain(value: object, *, style: str = "", multiline: bool = False) -> Text:
    """A rich Text of ``value``, visible, in ``style``: for table cells and assembled lines."""
    return Text(visible(value, keep="\n\t" if multiline else ""), style=style)


class _InertConsole(Console):
    """A Console that never interprets what it is given: no markup, no emoji codes, no escapes."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        # Every str this console prints (print, log, table cells) comes through here.
        return super().render_str(visible(text, keep="\n\t"), **kwargs)


out: Console = _InertConsole(highlight=False, soft_wrap=True, markup=False, emoji=False)
err: Console = _InertConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
