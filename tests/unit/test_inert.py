"""Stored text made inert: one rule for the terminal and the browser (contracts.inert)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contracts.inert import UNSAFE, visible
from factory.safe_text import visible as terminal_visible
from ingress.console.text import finalize, multiline


def test_each_kind_of_control_is_shown_by_name_or_code() -> None:
    assert visible("a\x1b[31mb\x07\u202e\udcff\tc\n") == "a\\x1b[31mb\\x07\\u202e\\xff\\tc\\n"
    assert visible("line\n\tindent\r", keep="\n\t") == "line\n\tindent\\r"
    assert visible("C:\\path") == "C:\\path"  # a backslash is not an escape of ours


@given(st.text())
def test_the_terminal_and_the_browser_show_the_same_text(text: str) -> None:
    shown = visible(text)
    assert terminal_visible(text) == shown == finalize(text)
    assert not UNSAFE.search(shown)


@given(st.text(alphabet=st.characters(codec=None)))
def test_a_body_of_text_in_the_browser_is_escaped_and_keeps_only_its_layout(text: str) -> None:
    html = str(multiline(text))
    assert "<" not in html.replace('<span class="ctl">', "").replace("</span>", "")
    assert all(char in "\n\t" for char in UNSAFE.findall(html))
    assert multiline("<b>[red]\x1b</b>") == '&lt;b&gt;[red]<span class="ctl">\\x1b</span>&lt;/b&gt;'
