"""Telegram's text rules, pure: UTF-16 length, chunking at natural breaks, HTML escaping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from worker.telegram.text import TELEGRAM_MAX_TEXT, escape_html, split_message, utf16_len


def test_short_text_is_one_chunk() -> None:
    assert split_message("hello") == ["hello"]


def test_chunks_fill_exactly_to_the_limit() -> None:
    assert split_message("a" * TELEGRAM_MAX_TEXT) == ["a" * TELEGRAM_MAX_TEXT]
    assert split_message("a" * (TELEGRAM_MAX_TEXT + 1)) == ["a" * TELEGRAM_MAX_TEXT, "a"]


def test_emoji_count_as_two_utf16_units() -> None:
    emoji = "😀"
    assert utf16_len(emoji) == 2
    assert split_message(emoji * 2048) == [emoji * 2048]  # 4096 units
    chunks = split_message("a" + emoji * 2048)  # 4097 units: the last emoji does not fit
    assert chunks == ["a" + emoji * 2047, emoji]
    for chunk in chunks:
        assert utf16_len(chunk) <= TELEGRAM_MAX_TEXT
        chunk.encode("utf-16-le")  # strict: would raise on a lone surrogate


def test_prefers_paragraph_then_line_then_word_breaks() -> None:
    para1, para2 = "x" * 3000, "y" * 3000
    assert split_message(f"{para1}\n\n{para2}") == [para1, para2]
    assert split_message(f"{para1}\n{para2}") == [para1, para2]
    words = "word " * 1000  # 5000 chars
    chunks = split_message(words)
    assert all(set(chunk.split()) == {"word"} for chunk in chunks)  # no word cut in two
    assert " ".join(chunks).split() == words.split()


def test_a_long_word_is_cut_hard_after_the_last_space() -> None:
    long_word = "z" * 5000
    chunks = split_message(f"short words {long_word}")
    assert chunks == ["short words", "z" * TELEGRAM_MAX_TEXT, "z" * (5000 - TELEGRAM_MAX_TEXT)]


def test_hard_cut_keeps_combining_marks_and_flags_whole() -> None:
    accented = "e\u0301" * 10  # é as e + combining acute
    for chunk in split_message(accented, limit=5):
        assert not chunk.startswith("\u0301")
    flags = "🇫🇷" * 10  # each flag is two regional indicators, 4 units
    chunks = split_message(flags, limit=10)
    assert all(len(chunk) % 2 == 0 for chunk in chunks)
    assert "".join(chunks) == flags


def test_paragraph_break_too_early_yields_to_a_later_line_break() -> None:
    text = "intro\n\n" + "a" * 3000 + "\n" + "b" * 3000
    assert split_message(text) == ["intro\n\n" + "a" * 3000, "b" * 3000]


def test_whitespace_only_text_has_no_chunks() -> None:
    assert split_message(" \n\n \t") == []


@given(
    st.text(alphabet=st.sampled_from(["a", "b", " ", "\n", "😀", "é", "&", "<", "\u0301", "🇫"]), max_size=300),
    st.integers(min_value=2, max_value=40),
)
def test_chunks_fit_and_keep_every_visible_character_in_order(text: str, limit: int) -> None:
    chunks = split_message(text, limit=limit)
    assert all(utf16_len(chunk) <= limit for chunk in chunks)
    assert all(chunk.strip() for chunk in chunks)
    assert "".join("".join(chunk.split()) for chunk in chunks) == "".join(text.split())


def test_escape_html_escapes_the_three_characters() -> None:
    assert escape_html('<b>1 & 2 > "0"</b>') == '&lt;b&gt;1 &amp; 2 &gt; "0"&lt;/b&gt;'
