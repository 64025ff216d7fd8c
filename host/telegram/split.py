"""Splitting rendered Telegram HTML: `split_message` (parts within Telegram's limit in UTF-16 code units, each
valid on its own), `plain_text` (the visible text, the fallback when Telegram refuses the HTML) and `utf16_len`.

Pure functions over strings: imports only the standard library, never the renderer (markdown.py, inline.py) or
anything else from the host.
"""

from __future__ import annotations

import bisect
import functools
import html
import re
import unicodedata
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["TELEGRAM_LIMIT", "plain_text", "split_message", "utf16_len"]

TELEGRAM_LIMIT = 4096


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units, the unit Telegram counts message length in."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# The markup is read once into pieces (tags, entities, runs of text) and its visible text; cuts are found with
# string searches on the visible text, so that splitting costs time in proportion to the text.

_MARKUP = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?>|&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
)
_SPACE = re.compile(r"[^\S\n]")


class _Piece(NamedTuple):
    """A tag (`tag` set), an entity, or a run of text; `text` is what it shows (empty for a tag)."""

    raw: str
    text: str = ""
    tag: str = ""
    closing: bool = False


@functools.lru_cache(maxsize=256)
def _entity(raw: str) -> _Piece | None:
    value = html.unescape(raw)
    return _Piece(raw, value) if len(value) == 1 else None  # else not an entity: plain text


def _pieces(markup: str) -> list[_Piece]:
    pieces: list[_Piece] = []
    done = 0
    for match in _MARKUP.finditer(markup):
        raw = match.group()
        if raw[0] == "&":
            entity = _entity(raw)
            if entity is None:
                continue
            piece = entity
        else:
            piece = _Piece(raw, "", match.group(2).lower(), bool(match.group(1)))
        if match.start() > done:
            pieces.append(_text(markup[done : match.start()]))
        pieces.append(piece)
        done = match.end()
    if done < len(markup):
        pieces.append(_text(markup[done:]))
    return pieces


def plain_text(markup: str) -> str:
    """The visible text of rendered HTML: tags dropped, entities unescaped."""
    return "".join(piece.text for piece in _pieces(markup))


def _fit(visible: str, start: int, units: int) -> int:
    """The largest end such that visible[start:end] is at most `units` UTF-16 code units long."""
    end = min(len(visible), start + units)
    while (over := utf16_len(visible[start:end]) - units) > 0:
        end -= (over + 1) // 2
    used = utf16_len(visible[start:end])
    while end < len(visible):
        width = 2 if ord(visible[end]) > 0xFFFF else 1
        if used + width > units:
            break
        used += width
        end += 1
    return end


def _joins(before: str, char: str) -> bool:
    """True when a cut between `before` and `char` would break a character from its modifier."""
    return bool(
        unicodedata.combining(char)
        or char in "\u200d\ufe0e\ufe0f"
        or 0x1F3FB <= ord(char) <= 0x1F3FF
        or before == "\u200d"
    )


def _choose_cut(visible: str, start: int, limit: int, tag_before: Callable[[int], bool]) -> int:
    """Where (in visible characters) to end the part that starts at `start`, when the rest does not fit: at the
    last paragraph break, else line break, else space in the second half of the window, else inside a word."""
    end = _fit(visible, start, limit)  # visible[end] is the first character that does not fit
    half = _fit(visible, start, limit // 2)
    if utf16_len(visible[start:half]) < limit // 2:
        half += 1
    low = max(half, start + 1)
    if low <= end:
        paragraph = visible.rfind("\n\n", low - 1, end + 2)
        if paragraph >= 0:
            return paragraph + 1 if paragraph + 1 <= end else paragraph
        line = visible.rfind("\n", low, end + 1)
        if line >= 0:
            return line
        space = -1
        for match in _SPACE.finditer(visible, low, end + 1):
            space = match.start()
        if space >= 0:
            return space
    cut = end
    while cut > start + 1 and not tag_before(cut) and _joins(visible[cut - 1], visible[cut]):
        cut -= 1
    return cut


def _trim(seq: list[_Piece]) -> list[_Piece]:
    """Drop the whitespace a part starts with (only line breaks inside code) and ends with."""
    out = list(seq)
    j = len(out) - 1
    while j >= 0:
        piece = out[j]
        if not piece.tag:
            kept = piece.text.rstrip()
            if kept:
                if kept != piece.text:
                    out[j] = _text(kept)  # an entity is one character: kept whole or dropped
                break
            del out[j]
        j -= 1
    in_code = False
    for j, piece in enumerate(out):
        if piece.tag:
            in_code = in_code or (not piece.closing and piece.tag in ("pre", "code"))
            continue
        kept = piece.text.lstrip("\n") if in_code else piece.text.lstrip()
        if kept:
            if kept != piece.text:
                out[j] = _text(kept)
            return [p for k, p in enumerate(out) if k >= j or p.tag]
    return [p for p in out if p.tag]


def _drop_empty(seq: list[_Piece]) -> list[_Piece]:
    out: list[_Piece] = []
    for piece in seq:
        if piece.tag and piece.closing and out and out[-1].tag == piece.tag and not out[-1].closing:
            out.pop()
        else:
            out.append(piece)
    return out


def _emit(stack: list[_Piece], part: list[_Piece]) -> tuple[list[_Piece], list[_Piece]]:
    """Wrap `part` with the tags open before it and close what it leaves open: (pieces, tags open after it)."""
    seq = list(stack)
    open_tags = list(stack)
    for piece in part:
        if piece.tag and not piece.closing:
            open_tags.append(piece)
        elif piece.tag:
            if all(tag.tag != piece.tag for tag in open_tags):
                continue  # a stray closing tag
            while open_tags[-1].tag != piece.tag:
                unclosed = open_tags.pop()
                seq.append(_Piece(f"</{unclosed.tag}>", tag=unclosed.tag, closing=True))
            open_tags.pop()
        seq.append(piece)
    seq.extend(_Piece(f"</{tag.tag}>", tag=tag.tag, closing=True) for tag in reversed(open_tags))
    return _drop_empty(_trim(seq)), open_tags


class _Cutter:
    """The pieces of one markup with their places in its visible text, cut at visible positions."""

    def __init__(self, markup: str) -> None:
        self.pieces = _pieces(markup)
        self.visible = "".join(piece.text for piece in self.pieces)
        self.starts: list[int] = []  # where each piece begins in the visible text
        self.shown: list[int] = []  # the pieces that show something, in order
        at = 0
        for index, piece in enumerate(self.pieces):
            self.starts.append(at)
            if piece.text:
                self.shown.append(index)
                at += len(piece.text)

    def position(self, visible: int) -> tuple[int, int]:
        """(piece, offset in its text) where the visible character `visible` begins; opening tags just before
        it go with what follows."""
        index = self.shown[bisect.bisect_right(self.shown, visible, key=lambda i: self.starts[i]) - 1]
        offset = visible - self.starts[index]
        if offset == 0:
            while index > 0 and self.pieces[index - 1].tag and not self.pieces[index - 1].closing:
                index -= 1
        return index, offset

    def tag_before(self, visible: int) -> bool:
        """Whether a tag stands right before the visible character `visible`."""
        index = self.shown[bisect.bisect_right(self.shown, visible, key=lambda i: self.starts[i]) - 1]
        return visible == self.starts[index] and index > 0 and bool(self.pieces[index - 1].tag)

    def between(self, start: tuple[int, int], end: tuple[int, int]) -> list[_Piece]:
        """The pieces from one position to another; a run of text cut at either end is cut too."""
        (first, skip), (last, keep) = start, end
        if first == last:
            return [_text(self.pieces[first].text[skip:keep])] if keep > skip else []
        out = [_text(self.pieces[first].text[skip:]) if skip else self.pieces[first]]
        out += self.pieces[first + 1 : last]
        if keep:
            out.append(_text(self.pieces[last].text[:keep]))
        return out


def _text(text: str) -> _Piece:
    return _Piece(text, text)


def split_message(markup: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split rendered HTML into parts of at most `limit` visible UTF-16 code units, each valid on its own.

    Cuts at a paragraph break, else a line break, else a space in the second half of the window, else inside
    a word; never inside a tag or an entity. Tags open at a cut are closed and reopened in the next part.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 code units")
    cutter = _Cutter(markup)
    visible = cutter.visible
    parts: list[str] = []
    stack: list[_Piece] = []
    start, here = (0, 0), 0
    while start[0] < len(cutter.pieces):
        if len(visible) - here <= limit and utf16_len(visible[here:]) <= limit:
            end, cut = (len(cutter.pieces), 0), len(visible)
        else:
            cut = _choose_cut(visible, here, limit, cutter.tag_before)
            end = cutter.position(cut)
        seq, stack = _emit(stack, cutter.between(start, end))
        if any(piece.text.strip() for piece in seq):
            parts.append("".join(piece.raw for piece in seq))
        start, here = end, cut
    return parts
