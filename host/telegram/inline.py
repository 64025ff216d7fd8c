"""Inline Markdown to Telegram HTML: emphasis delimiters (CommonMark's pairing), code spans, links, autolinks
and bare URLs, with tags that always balance; `_esc` escapes text for Telegram's HTML.

Pure functions over strings: imports only the standard library, never the block pass (markdown.py), the splitter
(split.py) or anything else from the host.
"""

from __future__ import annotations

import bisect
import html
import re
import unicodedata
from dataclasses import dataclass, field

_SAFE_SCHEMES = ("http://", "https://", "mailto:", "tg://")
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
_EMPHASIS_TAGS = {"*": ("i", "b"), "_": ("i", "b"), "~": ("s", "s"), "|": ("tg-spoiler", "tg-spoiler")}
_URL_TRAILING = frozenset(".,:;!?'\"*_~|")

_RUN = re.compile(r"(.)\1*", re.DOTALL)
_BACKTICKS = re.compile(r"`+")
_AUTOLINK = re.compile(r"<([^\s<>]+)>")
_URL_BODY = re.compile(r"[^\s<>`]*")
_INLINE_SPECIAL = re.compile(r"[\\`\[!<*_~|]|(?i:https?://|www\.)")
LINK_PART_MAX = 2048  # characters a link's destination or title may take


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


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
