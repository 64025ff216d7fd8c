"""Reply rendering for Telegram: the model's Markdown to Telegram's HTML subset, splitting, plain text.

Owns `to_telegram_html` (a hand-written block pass, then an inline pass whose tags always balance),
`split_message` (parts within Telegram's limit in UTF-16 code units, each valid on its own), `plain_text`
(the fallback) and `utf16_len`. Pure functions over strings: imports nothing from the host, no network.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field

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
    return _render_blocks(text.split("\n"), quoted=False)


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


def _render_blocks(lines: list[str], quoted: bool) -> str:
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
                rest = lines[i].lstrip(" ")[1:]
                inner_lines.append(rest[1:] if rest.startswith((" ", "\t")) else rest)
                i += 1
            inner = _render_blocks(inner_lines, quoted=True)
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
    active: bool = True
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
    j = i
    while j < len(text) and text[j] == text[i]:
        j += 1
    return j - i


def _find_code_close(text: str, start: int, length: int) -> int:
    j = start
    while True:
        j = text.find("`", j)
        if j < 0:
            return -1
        run = _run_length(text, j)
        if run == length:
            return j
        j += run


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


def _parse_link(text: str, i: int) -> tuple[str, str, int] | None:
    """Parse `[label](destination "title")` at `text[i] == "["`: (label, destination, end) or None."""
    n = len(text)
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
        return None
    label = text[i + 1 : j]
    k = _skip_blanks(text, j + 2)
    if k < n and text[k] == "<":
        end = text.find(">", k + 1)
        if end < 0 or "\n" in text[k + 1 : end]:
            return None
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
        dest = text[start:k]
    k = _skip_blanks(text, k)
    if k < n and text[k] in "\"'(":
        end = text.find(")" if text[k] == "(" else text[k], k + 1)
        if end < 0:
            return None
        k = _skip_blanks(text, end + 1)
    if k < n and text[k] == ")":
        return label, _unescape_backslashes(dest), k + 1
    return None


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
    end = text.find(">", i + 1)
    if end < 0:
        return None
    inner = text[i + 1 : end]
    if not inner or any(ch.isspace() or ch == "<" for ch in inner):
        return None
    href = inner
    if "@" in inner and ":" not in inner:
        href = "mailto:" + inner
    return (href, inner, end + 1) if _safe_href(href) else None


def _bare_url_end(text: str, i: int) -> int:
    head = text[i : i + 8].lower()
    prefix = next((p for p in ("https://", "http://", "www.") if head.startswith(p)), "")
    if not prefix:
        return i
    j = i
    while j < len(text) and not text[j].isspace() and text[j] not in "<>`":
        j += 1
    while j > i:
        ch = text[j - 1]
        pair = {")": "(", "]": "["}.get(ch)
        if not (ch in _URL_TRAILING or (pair and text.count(pair, i, j) < text.count(ch, i, j))):
            break
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

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and (text[i + 1] in _ASCII_PUNCT or text[i + 1] == "\n"):
            buf.append(text[i + 1])
            i += 2
        elif c == "`":
            run = _run_length(text, i)
            end = _find_code_close(text, i + run, run)
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
            parsed = _parse_link(text, i + 1 if c == "!" else i)
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
            if c in "~|" and run < 2:
                buf.append(text[i : i + run])
            else:
                flush()
                prev = text[i - 1] if i > 0 else " "
                nxt = text[i + run] if i + run < n else " "
                tokens.append(_delim(c, run, prev, nxt))
            i += run
        else:
            buf.append(c)
            i += 1
    flush()
    _match_emphasis([t for t in tokens if isinstance(t, _Delim)])
    return "".join(t if isinstance(t, str) else t.render() for t in tokens)


def _match_emphasis(delims: list[_Delim]) -> None:
    """Pair delimiter runs (CommonMark's algorithm): each match disables the runs between the pair, so the
    resulting tags always nest properly."""
    for ci, closer in enumerate(delims):
        if not closer.can_close:
            continue
        while closer.remaining > 0:
            found = -1
            for oi in range(ci - 1, -1, -1):
                opener = delims[oi]
                if not (opener.active and opener.can_open and opener.remaining and opener.char == closer.char):
                    continue
                if closer.char in "~|":
                    if opener.remaining < 2 or closer.remaining < 2:
                        continue
                elif (
                    (opener.can_close or closer.can_open)
                    and (opener.count + closer.count) % 3 == 0
                    and not (opener.count % 3 == 0 and closer.count % 3 == 0)
                ):
                    continue
                found = oi
                break
            if found < 0:
                break
            opener = delims[found]
            use = 2 if opener.remaining >= 2 and closer.remaining >= 2 else 1
            tag = _EMPHASIS_TAGS[closer.char][use - 1]
            opener.remaining -= use
            closer.remaining -= use
            opener.opens.insert(0, tag)
            closer.closes.append(tag)
            for between in delims[found + 1 : ci]:
                between.active = False


# --- splitting and plain text -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    """One unit of rendered HTML: a whole tag (`tag` set) or one visible character (maybe an entity)."""

    raw: str
    text: str = ""
    tag: str = ""
    closing: bool = False


def _items(markup: str) -> list[_Item]:
    items: list[_Item] = []
    i, n = 0, len(markup)
    while i < n:
        c = markup[i]
        if c == "<":
            end = markup.find(">", i)
            body = markup[i + 1 : end].strip() if end > 0 else ""
            name = body.lstrip("/").split(maxsplit=1)[0].lower() if body.lstrip("/") else ""
            if name and (name[0].isalpha()):
                items.append(_Item(markup[i : end + 1], tag=name, closing=body.startswith("/")))
                i = end + 1
                continue
        elif c == "&":
            end = markup.find(";", i, i + 12)
            if end > 0:
                entity = markup[i : end + 1]
                value = html.unescape(entity)
                if value != entity:
                    items.append(_Item(entity, text=value))
                    i = end + 1
                    continue
        items.append(_Item(c, text=c))
        i += 1
    return items


def plain_text(markup: str) -> str:
    """The visible text of rendered HTML: tags dropped, entities unescaped."""
    return "".join(item.text for item in _items(markup))


def _grapheme_join(items: list[_Item], c: int) -> bool:
    """True when a cut before `items[c]` would break a character from its modifier."""
    ch, before = items[c].text, items[c - 1].text
    return bool(
        ch
        and (
            unicodedata.combining(ch[0])
            or ch[0] in "\u200d\ufe0e\ufe0f"
            or 0x1F3FB <= ord(ch[0]) <= 0x1F3FF
            or before == "\u200d"
        )
    )


def _choose_cut(items: list[_Item], start: int, end: int, limit: int) -> int:
    """Where to end the part that starts at `start`, given that items[start:end] fit and items[end] does not."""
    best: dict[str, int] = {}
    used = 0
    last_char = ""
    half = limit // 2
    for c in range(start, end + 1):
        item = items[c]
        if item.tag:
            continue
        if c > start and used >= half and item.text.isspace():
            if item.text == "\n":
                following = next((it.text for it in items[c + 1 :] if not it.tag), "")
                kind = "paragraph" if last_char == "\n" or following == "\n" else "line"
                best[kind] = c
            else:
                best["space"] = c
        used += utf16_len(item.text)
        last_char = item.text
    cut = next((best[kind] for kind in ("paragraph", "line", "space") if kind in best), end)
    if cut == end:
        while cut > start + 1 and _grapheme_join(items, cut):
            cut -= 1
    while cut - 1 > start and items[cut - 1].tag and not items[cut - 1].closing:
        cut -= 1
    if not any(not it.tag for it in items[start:cut]):
        cut = next(k for k in range(start, len(items)) if not items[k].tag) + 1
    return cut


def _trim(seq: list[_Item]) -> list[_Item]:
    out = list(seq)
    j = len(out) - 1
    while j >= 0:
        if out[j].tag:
            j -= 1
        elif out[j].text.isspace():
            del out[j]
            j -= 1
        else:
            break
    j, in_code = 0, False
    while j < len(out):
        item = out[j]
        if item.tag:
            in_code = in_code or (not item.closing and item.tag in ("pre", "code"))
            j += 1
        elif item.text == "\n" or (item.text.isspace() and not in_code):
            del out[j]
        else:
            break
    return out


def _drop_empty(seq: list[_Item]) -> list[_Item]:
    out: list[_Item] = []
    for item in seq:
        if item.tag and item.closing and out and out[-1].tag == item.tag and not out[-1].closing:
            out.pop()
        else:
            out.append(item)
    return out


def _emit(stack: list[_Item], part: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """Wrap `part` with the tags open before it and close what it leaves open: (items, tags open after it)."""
    seq = list(stack)
    open_tags = list(stack)
    for item in part:
        if item.tag and not item.closing:
            open_tags.append(item)
        elif item.tag:
            names = [t.tag for t in open_tags]
            if item.tag not in names:
                continue  # a stray closing tag
            while open_tags[-1].tag != item.tag:
                unclosed = open_tags.pop()
                seq.append(_Item(f"</{unclosed.tag}>", tag=unclosed.tag, closing=True))
            open_tags.pop()
        seq.append(item)
    seq.extend(_Item(f"</{t.tag}>", tag=t.tag, closing=True) for t in reversed(open_tags))
    return _drop_empty(_trim(seq)), open_tags


def split_message(markup: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Split rendered HTML into parts of at most `limit` visible UTF-16 code units, each valid on its own.

    Cuts at a paragraph break, else a line break, else a space in the second half of the window, else inside
    a word; never inside a tag or an entity. Tags open at a cut are closed and reopened in the next part.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 code units")
    items = _items(markup)
    parts: list[str] = []
    stack: list[_Item] = []
    start, n = 0, len(items)
    while start < n:
        used, end = 0, start
        while end < n:
            width = utf16_len(items[end].text)
            if used + width > limit:
                break
            used += width
            end += 1
        cut = n if end >= n else _choose_cut(items, start, end, limit)
        seq, stack = _emit(stack, items[start:cut])
        if any(item.text.strip() for item in seq):
            parts.append("".join(item.raw for item in seq))
        start = cut
    return parts
