"""Markdown blocks to Telegram HTML: `to_telegram_html` and the block pass (fences, indented code, lists,
quotes, tables, headings, rules, paragraphs); each block's text goes through the inline pass (inline.py).

Pure functions over strings: imports inline.py and the standard library only; never the splitter (split.py) or
anything else from the host.
"""

from __future__ import annotations

import re

from host.telegram.inline import _esc, _inline

__all__ = ["to_telegram_html"]

HR_TEXT = "──────────"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LANG = re.compile(r"[A-Za-z0-9_+#.\-]{1,32}")
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)")
_HR = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_LIST = re.compile(r"^([ \t]*)([-*+•]|\d{1,9}[.)])(?:[ \t]+(.*)|[ \t]*$)")
_QUOTE = re.compile(r"^ {0,3}>")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_QUOTE_MARKERS = re.compile(r"^(?: {0,3}>[ \t]?)+")
MAX_QUOTE_DEPTH = 8  # Telegram shows one level of quote; deeper levels are read flat


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
