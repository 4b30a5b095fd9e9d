"""Telegram's text rules as pure functions: UTF-16 length, chunking, and HTML escaping.

Telegram takes at most 4096 UTF-16 code units of text *after* entity parsing, so a reply is
chunked by UTF-16 length first, preferring paragraph, line and word breaks, and only then is each
chunk escaped for ``parse_mode=HTML`` (an escape is never split, and escaping never pushes a chunk
over the limit, since the limit counts the parsed text). Nothing here does I/O.
"""

from __future__ import annotations

import html
import unicodedata

__all__ = ["TELEGRAM_MAX_TEXT", "escape_html", "split_message", "utf16_len"]

TELEGRAM_MAX_TEXT = 4096  # UTF-16 code units after entity parsing (Bot API, sendMessage.text)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it: astral characters (most emoji) are two UTF-16 code units."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def split_message(text: str, limit: int = TELEGRAM_MAX_TEXT) -> list[str]:
    """Split raw (unescaped) text into chunks of at most ``limit`` UTF-16 code units each.

    Breaks at the last paragraph break, else line break, else whitespace in the second half of the
    window; failing that, at any of them; failing that (one very long word), hard at the limit, but
    never inside a surrogate pair (Python strings hold code points) and, where possible, not between a
    character and the combining mark, joiner or variation selector that belongs to it. The separator
    a chunk breaks on is dropped, and whitespace-only chunks are not sent (Telegram rejects them).
    """
    if limit < 2:
        raise ValueError(f"limit: {limit} is too small; a chunk must hold one astral character (2 units)")
    chunks: list[str] = []
    rest = text
    while rest:
        end = _fit(rest, limit)
        if end == len(rest):
            chunk, rest = rest, ""
        else:
            cut, skip = _break_point(rest, end)
            chunk, rest = rest[:cut], rest[cut + skip :]
            rest = rest.lstrip("\n")
        if chunk.strip():
            chunks.append(chunk)
    return chunks


def _fit(text: str, limit: int) -> int:
    """The largest code-point index whose prefix fits in ``limit`` UTF-16 units."""
    if len(text) <= limit // 2:
        return len(text)  # fits whatever it holds: even all-astral text is 2 units per char
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


_SEPARATORS = ("\n\n", "\n", " ", "\t")


def _break_point(text: str, end: int) -> tuple[int, int]:
    """Where to cut ``text[:end]``: (cut index, separator length to drop)."""
    for floor in (end // 2, 1):
        for separator in _SEPARATORS:
            at = text.rfind(separator, floor, end)
            if at >= floor:
                return at, len(separator)
    return _hard_cut(text, end), 0


def _hard_cut(text: str, end: int) -> int:
    # Step back over marks that attach to the previous character (é as e + U+0301, 👍🏽, ZWJ
    # sequences like 👩‍💻), so a chunk does not end in half a glyph. Bounded: a pathological run of
    # marks gets cut anyway rather than producing an empty chunk.
    cut = end
    while cut > 1 and end - cut < 32 and _inside_glyph(text, cut):
        cut -= 1
    return cut if cut > 1 and end - cut < 32 else end


def _inside_glyph(text: str, cut: int) -> bool:
    if _attaches(text[cut]) or text[cut - 1] == "\u200d":
        return True
    # Flags are pairs of regional indicators: cutting after an odd count of them halves a flag.
    run = 0
    while run < cut and _regional(text[cut - 1 - run]):
        run += 1
    return run % 2 == 1 and _regional(text[cut])


def _regional(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _attaches(char: str) -> bool:
    code = ord(char)
    return (
        unicodedata.combining(char) != 0
        or code == 0x200D  # zero-width joiner
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= code <= 0xE007F  # emoji tag sequences (flags of regions)
    )


def escape_html(text: str) -> str:
    """Escape for ``parse_mode=HTML``: the three characters Telegram requires (quotes may stay)."""
    return html.escape(text, quote=False)
