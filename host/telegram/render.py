"""Reply rendering for Telegram: the model's Markdown to Telegram's HTML subset, splitting, plain text.

Owns `to_telegram_html` (a hand-written block pass, then an inline pass whose tags always balance),
`split_message` (parts within Telegram's limit in UTF-16 code units, each valid on its own), `plain_text`
(the fallback) and `utf16_len`. Pure functions over strings: imports nothing from the host, no network.
"""

from __future__ import annotations

import bisect
import functools
import html
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["TELEGRAM_LIMIT", "plain_text", "split_message", "to_telegram_html", "utf16_len"]

TELEGRAM_LIMIT = 4096
HR_TEXT = "──────────"
_SAFE_SCHEMES = ("http://", "https://", "mailto:", "tg://")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_EMPHASIS_TAGS = {"*": ("i", "b"), "_": ("i", "b"), "~": ("s", "s"), "|": ("tg-spoiler", "tg-spoiler")}
_URL_TRAILING = frozenset(".,:;!?'\"*_~|")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LANG = re.compile(r"[A-Za-z0-9_+#.\-]{1,32}")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST = re.compile(r"^([ \t]*)([-*+•]|\d{1,9}[.)])(?:[ \t]+(.*)|[ \t]*$)")
_QUOTE = re.compile(r"^ {0,3}>")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_RUN = re.compile(r"(.)\1*", re.DOTALL)
_BACKTICKS = re.compile(r"`+")
_AUTOLINK = re.compile(r"<([^\s<>]+)>")
_URL_BODY = re.compile(r"[^\s<>`]*")
_INLINE_SPECIAL = re.compile(r"[\\`\[!<*_~|]|(?i:https?://|www\.)")
_QUOTE_MARKERS = re.compile(r"^(?: {0,3}>[ \t]?)+")
MAX_QUOTE_DEPTH = 8  # Telegram shows one level of quote; deeper levels are read flat
LINK_PART_MAX = 2048  # characters a link's destination or title may take


def utf16_len(text: str) -> int:
    """Length of `text` in UTF-16 code units, the unit Telegram counts message length in."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


# --- block pass -------------------------------------------------------------------------------------------------


def to_telegram_html(markdown: str) -> str:
    """Convert chat-model Markdown to Telegram HTML; the result is always well-formed."""
    text = markdown.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    # Lone surrogates cannot be sent; replace them.
    text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return _render_blocks(text.split("\n"), quoted=False, depth=0)


def _indent(line: str) -> int:
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += 4 - width % 4
        else:
            break
    return width


def _strip_indent(line: str, amount: int) -> str:
    i = 0
    width = 0
    while i < len(line) and width < amount and line[i] in " \t":
        width += 1 if line[i] == " " else 4 - width % 4
        i += 1
    return line[i:]


def _open_fence(line: str) -> tuple[str, str, int] | None:
    m = _FENCE.match(line)
    if m is None:
        return None
    fence, info = m.group("fence"), m.group("info")
    if fence[0] == "`" and "`" in info:
        return None
    words = info.split()
    lang = words[0] if words and _LANG.fullmatch(words[0]) else ""
    return fence, lang, _indent(m.group("indent"))


def _closes_fence(line: str, fence: str) -> bool:
    body = line.strip()
    return len(body) >= len(fence) and body == fence[0] * len(body)


def _is_table_start(lines: list[str], i: int) -> bool:
    return "|" in lines[i] and i + 1 < len(lines) and "|" in lines[i + 1] and bool(_TABLE_SEP.match(lines[i + 1]))


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(
        _open_fence(line) is not None
        or _HR.match(line)
        or _HEADING.match(line)
        or _QUOTE.match(line)
        or _LIST.match(line)
        or _is_table_start(lines, i)
    )


def _code_block(content: str, lang: str, quoted: bool) -> str:
    if not content.strip():
        return ""
    if quoted:  # Telegram allows no <pre> inside a <blockquote>
        return f"<code>{_esc(content)}</code>"
    if lang:
        return f'<pre><code class="language-{lang}">{_esc(content)}</code></pre>'
    return f"<pre>{_esc(content)}</pre>"


def _paragraph_line(line: str) -> str:
    line = line.strip()
    trailing = len(line) - len(line.rstrip("\\"))
    if trailing % 2 == 1:  # a backslash hard break
        line = line[:-1].rstrip()
    return line


def _bullet(marker: str, level: int) -> str:
    if marker[0].isdigit():
        return marker
    return ("•", "◦", "▪")[min(level, 2)]


def _render_blocks(lines: list[str], quoted: bool, depth: int) -> str:
    out: list[str] = []
    blank = False

    def add(fragment: str) -> None:
        nonlocal blank
        if fragment:
            if out:
                out.append("\n\n" if blank else "\n")
            out.append(fragment)
        blank = False

    list_stack: list[int] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            blank = True
            i += 1
            continue
        indent = _indent(line)
        fence = _open_fence(line)
        if fence is not None:
            marker, lang, fence_indent = fence
            body: list[str] = []
            i += 1
            while i < n and not _closes_fence(lines[i], marker):
                body.append(_strip_indent(lines[i], fence_indent))
                i += 1
            i += 1  # the closing fence; an unterminated fence takes the rest as code
            add(_code_block("\n".join(body), lang, quoted))
            list_stack = []
            continue
        if indent >= 4 and not list_stack:
            body = []
            while i < n and (not lines[i].strip() or _indent(lines[i]) >= 4):
                body.append(_strip_indent(lines[i], 4))
                i += 1
            trailing_blank = False
            while body and not body[-1].strip():
                body.pop()
                trailing_blank = True
            add(_code_block("\n".join(body), "", quoted))
            blank = trailing_blank
            continue
        if _HR.match(line):
            add(HR_TEXT)
            list_stack = []
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading is not None:
            content = line[heading.end() :].strip()
            unclosed = content.rstrip("#")
            if not unclosed or unclosed.endswith((" ", "\t")):
                content = unclosed.rstrip()
            if len(content) > 4 and content.startswith("**") and content.endswith("**") and "**" not in content[2:-2]:
                content = content[2:-2]  # "## **Title**" would nest <b> in <b>
            inner = _inline(content)
            add(f"<b>{inner}</b>" if inner.strip() else "")
            list_stack = []
            i += 1
            continue
        if _QUOTE.match(line):
            inner_lines: list[str] = []
            while i < n and _QUOTE.match(lines[i]):
                if depth + 1 >= MAX_QUOTE_DEPTH:  # the levels below are read as one
                    inner_lines.append(_QUOTE_MARKERS.sub("", lines[i]))
                else:
                    rest = lines[i].lstrip(" ")[1:]
                    inner_lines.append(rest[1:] if rest.startswith((" ", "\t")) else rest)
                i += 1
            inner = _render_blocks(inner_lines, quoted=True, depth=depth + 1)
            add(inner if quoted or not inner else f"<blockquote>{inner}</blockquote>")
            list_stack = []
            continue
        if _is_table_start(lines, i):
            rows = [line, lines[i + 1]]
            i += 2
            while i < n and lines[i].strip() and "|" in lines[i]:
                rows.append(lines[i])
                i += 1
            add(_code_block("\n".join(rows), "", quoted))
            list_stack = []
            continue
        item = _LIST.match(line)
        if item is not None:
            item_indent = _indent(item.group(1))
            if not list_stack:
                list_stack = [item_indent]
            elif item_indent > list_stack[-1]:
                list_stack.append(item_indent)
            else:
                while len(list_stack) > 1 and list_stack[-1] > item_indent:
                    list_stack.pop()
                if item_indent > list_stack[-1]:
                    list_stack.append(item_indent)
                elif item_indent < list_stack[-1]:
                    list_stack[-1] = item_indent
            level = len(list_stack) - 1
            texts = [_paragraph_line(item.group(3) or "")]
            i += 1
            while i < n and lines[i].strip() and not _starts_block(lines, i):
                texts.append(_paragraph_line(lines[i]))
                i += 1
            pad = "  " * level
            inner = _inline("\n".join(texts)).replace("\n", "\n" + pad + "  ")
            add(f"{pad}{_bullet(item.group(2), level)} {inner}".rstrip())
            continue
        if indent == 0:
            list_stack = []
        para = [_paragraph_line(line)]
        i += 1
        setext = False
        while i < n and lines[i].strip():
            if _SETEXT.match(lines[i]):
                setext = True
                i += 1
                break
            if _starts_block(lines, i):
                break
            para.append(_paragraph_line(lines[i]))
            i += 1
        inner = _inline("\n".join(para))
        add(f"<b>{inner}</b>" if setext and inner.strip() else inner)
    return "".join(out)


# --- inline pass ------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Delim:
    """A run of `*`, `_`, `~` or `|`; matched pairs become tags, what is left stays literal text."""

    char: str
    count: int
    can_open: bool
    can_close: bool
    remaining: int = 0
    opens: list[str] = field(default_factory=list)
    closes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.remaining = self.count

    def render(self) -> str:
        closes = "".join(f"</{tag}>" for tag in self.closes)
        opens = "".join(f"<{tag}>" for tag in self.opens)
        return closes + _esc(self.char * self.remaining) + opens


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def _delim(char: str, count: int, prev: str, nxt: str) -> _Delim:
    prev_space, next_space = prev.isspace(), nxt.isspace()
    prev_punct, next_punct = _is_punct(prev), _is_punct(nxt)
    left = not next_space and (not next_punct or prev_space or prev_punct)
    right = not prev_space and (not prev_punct or next_space or next_punct)
    if char == "_":
        return _Delim(char, count, left and (not right or prev_punct), right and (not left or next_punct))
    if char == "*" and prev.isascii() and prev.isalnum() and nxt.isascii() and nxt.isalnum():
        return _Delim(char, count, False, False)  # 2*3*4, a*b: intraword asterisks stay literal
    return _Delim(char, count, left, right)


def _run_length(text: str, i: int) -> int:
    match = _RUN.match(text, i)
    return match.end() - i if match else 0


class _CodeRuns:
    """Where each run of backticks of a text starts, by length: finds a code span's closing run in log time."""

    def __init__(self, text: str) -> None:
        self.starts: dict[int, list[int]] = {}
        for match in _BACKTICKS.finditer(text):
            self.starts.setdefault(match.end() - match.start(), []).append(match.start())

    def close(self, start: int, length: int) -> int:
        """The first run of exactly `length` backticks at or after `start`, or -1."""
        starts = self.starts.get(length, [])
        k = bisect.bisect_left(starts, start)
        return starts[k] if k < len(starts) else -1


@dataclass(slots=True)
class _Budget:
    """How many more characters link parsing may look at in one text: a wall of brackets stays linear."""

    left: int


def _safe_href(url: str) -> bool:
    lower = url.lower()
    if any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in url):
        return False
    for scheme in _SAFE_SCHEMES:
        if lower.startswith(scheme):
            rest = url[len(scheme) :]
            return any(ch.isalnum() for ch in rest) and (scheme != "mailto:" or "@" in rest)
    return False


def _unescape_backslashes(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ASCII_PUNCT:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _skip_blanks(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\n":
        i += 1
    return i


def _parse_link(text: str, i: int, budget: _Budget) -> tuple[str, str, int] | None:
    """Parse `[label](destination "title")` at `text[i] == "["`: (label, destination, end) or None. Looks at
    no more characters than the budget has left, and takes what it looked at from it."""
    parsed, reached = _scan_link(text, i, min(len(text), i + budget.left))
    budget.left -= max(reached - i, 1)
    return parsed


def _scan_link(text: str, i: int, n: int) -> tuple[tuple[str, str, int] | None, int]:
    """_parse_link within text[:n]: the link or None, and how far it looked."""
    depth = 0
    j = i
    while j < min(n, i + 1000):  # labels are short; the cap keeps a wall of "[" linear
        ch = text[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                break
        j += 1
    if j + 1 >= n or text[j] != "]" or text[j + 1] != "(":
        return None, j
    label = text[i + 1 : j]
    k = _skip_blanks(text, j + 2)
    n = min(n, k + LINK_PART_MAX)
    if k < n and text[k] == "<":
        end = text.find(">", k + 1, n)
        if end < 0 or "\n" in text[k + 1 : end]:
            return None, n if end < 0 else end
        dest = text[k + 1 : end]
        k = end + 1
    else:
        start, parens = k, 0
        while k < n:
            ch = text[k]
            if ch == "\\" and k + 1 < n:
                k += 2
                continue
            if ch.isspace():
                break
            if ch == "(":
                parens += 1
            elif ch == ")":
                if parens == 0:
                    break
                parens -= 1
            k += 1
        if k >= n:
            return None, k  # no end within reach
        dest = text[start:k]
    k = _skip_blanks(text, k)
    if k < n and text[k] in "\"'(":
        end = text.find(")" if text[k] == "(" else text[k], k + 1, min(len(text), k + 1 + LINK_PART_MAX))
        if end < 0:
            return None, k + 1 + LINK_PART_MAX
        k = _skip_blanks(text, end + 1)
    if k < len(text) and text[k] == ")":
        return (label, _unescape_backslashes(dest), k + 1), k + 1
    return None, k


def _link_html(label: str, dest: str) -> str:
    label_html = _inline(label, links=False) if label.strip() else ""
    if _safe_href(dest):
        return f'<a href="{html.escape(dest, quote=True)}">{label_html or _esc(dest)}</a>'
    if not dest.strip():
        return label_html
    if not label_html:
        return _esc(dest)
    return f"{label_html} ({_esc(dest)})"


def _autolink(text: str, i: int) -> tuple[str, str, int] | None:
    match = _AUTOLINK.match(text, i)
    if match is None:
        return None
    inner, end = match.group(1), match.end() - 1
    href = inner
    if "@" in inner and ":" not in inner:
        href = "mailto:" + inner
    return (href, inner, end + 1) if _safe_href(href) else None


def _bare_url_end(text: str, i: int) -> int:
    head = text[i : i + 8].lower()
    prefix = next((p for p in ("https://", "http://", "www.") if head.startswith(p)), "")
    if not prefix:
        return i
    j = _URL_BODY.match(text, i).end()  # type: ignore[union-attr]  # it matches the empty string too
    counts = {ch: text.count(ch, i, j) for ch in "()[]"}
    while j > i:
        ch = text[j - 1]
        pair = {")": "(", "]": "["}.get(ch)
        if not (ch in _URL_TRAILING or (pair and counts[pair] < counts[ch])):
            break
        if ch in counts:
            counts[ch] -= 1
        j -= 1
    return j if j - i > len(prefix) else i


def _inline(text: str, links: bool = True) -> str:
    """Render inline Markdown; inside a link label (`links=False`) no links and no code entities."""
    tokens: list[str | _Delim] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            tokens.append(_esc("".join(buf)))
            buf.clear()

    code_runs: _CodeRuns | None = None
    budget = _Budget(2 * len(text) + 4096)
    i, n = 0, len(text)
    while i < n:
        special = _INLINE_SPECIAL.search(text, i)
        plain_end = special.start() if special else n
        if plain_end > i:
            buf.append(text[i:plain_end])
            i = plain_end
            continue
        c = text[i]
        if c == "\\" and i + 1 < n and (text[i + 1] in _ASCII_PUNCT or text[i + 1] == "\n"):
            buf.append(text[i + 1])
            i += 2
        elif c == "`":
            run = _run_length(text, i)
            code_runs = code_runs or _CodeRuns(text)
            end = code_runs.close(i + run, run)
            if end < 0:
                buf.append(text[i : i + run])
                i += run
                continue
            content = text[i + run : end].replace("\n", " ")
            if content.startswith(" ") and content.endswith(" ") and content.strip():
                content = content[1:-1]
            flush()
            tokens.append(f"<code>{_esc(content)}</code>" if links else _esc(content))
            i = end + run
        elif links and (c == "[" or (c == "!" and text.startswith("[", i + 1))):
            parsed = _parse_link(text, i + 1 if c == "!" else i, budget)
            if parsed is None:
                buf.append(c)
                i += 1
                continue
            flush()
            tokens.append(_link_html(parsed[0], parsed[1]))
            i = parsed[2]
        elif c == "<" and links and (auto := _autolink(text, i)) is not None:
            flush()
            tokens.append(f'<a href="{html.escape(auto[0], quote=True)}">{_esc(auto[1])}</a>')
            i = auto[2]
        elif c in "hHwW" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "/@.-_:")):
            end = _bare_url_end(text, i)
            if end == i:
                buf.append(c)
                i += 1
                continue
            flush()
            tokens.append(_esc(text[i:end]))  # left as text: Telegram links it, and no markup inside it
            i = end
        elif c in _EMPHASIS_TAGS:
            run = _run_length(text, i)
            delim = None
            if c not in "~|" or run >= 2:
                prev = text[i - 1] if i > 0 else " "
                nxt = text[i + run] if i + run < n else " "
                delim = _delim(c, run, prev, nxt)
            if delim is None or not (delim.can_open or delim.can_close):
                buf.append(text[i : i + run])  # a run that can never pair is text
            else:
                flush()
                tokens.append(delim)
            i += run
        else:
            buf.append(c)
            i += 1
    flush()
    _match_emphasis([t for t in tokens if isinstance(t, _Delim)])
    return "".join(t if isinstance(t, str) else t.render() for t in tokens)


def _match_emphasis(delims: list[_Delim]) -> None:
    """Pair delimiter runs (CommonMark's algorithm): each match disables the runs between the pair, so the
    resulting tags always nest properly. The runs that may still open wait on a stack; a closer that found no
    opener marks how far down its kind need not look again, so that the pairing stays linear."""
    openers: list[_Delim] = []
    floors: dict[tuple[str, bool, int], int] = {}  # (char, closer can open, closer length % 3): stack depth

    def truncate(depth: int) -> None:
        del openers[depth:]
        for key, floor in floors.items():
            floors[key] = min(floor, depth)

    for closer in delims:
        while closer.can_close and closer.remaining > 0:
            if closer.char in "~|" and closer.remaining < 2:
                break
            key = (closer.char, closer.can_open, closer.count % 3)
            found = -1
            for k in range(len(openers) - 1, floors.get(key, 0) - 1, -1):
                opener = openers[k]
                if opener.char != closer.char:
                    continue
                if closer.char in "~|":
                    if opener.remaining < 2:
                        continue
                elif (
                    (opener.can_close or closer.can_open)
                    and (opener.count + closer.count) % 3 == 0
                    and not (opener.count % 3 == 0 and closer.count % 3 == 0)
                ):
                    continue
                found = k
                break
            if found < 0:
                floors[key] = len(openers)
                break
            opener = openers[found]
            use = 2 if opener.remaining >= 2 and closer.remaining >= 2 else 1
            tag = _EMPHASIS_TAGS[closer.char][use - 1]
            opener.remaining -= use
            closer.remaining -= use
            opener.opens.insert(0, tag)
            closer.closes.append(tag)
            truncate(found + 1 if opener.remaining else found)  # the runs between are disabled
        if closer.can_open and closer.remaining > 0:
            openers.append(closer)


# --- splitting and plain text -----------------------------------------------------------------------------------
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
