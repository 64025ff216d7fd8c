"""Markdown to Telegram HTML, message splitting and plain text: exact conversions and validity properties."""

import random
import re
from collections import Counter
from html.parser import HTMLParser

import pytest

from host.telegram.markdown import to_telegram_html
from host.telegram.split import plain_text, split_message, utf16_len

FENCE_INFO = re.compile(r"(?m)^([ \t]*(?:`{3,}(?=[^`\n]*$)|~{3,}))[^\n]*$")
ALLOWED = {"b", "i", "s", "u", "code", "pre", "a", "blockquote", "tg-spoiler"}


class _Checker(HTMLParser):
    """Asserts that markup uses only Telegram's tags, balanced, properly nested, in allowed combinations."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        assert tag in ALLOWED, tag
        names = [name for name, _ in attrs]
        assert names == (["href"] if tag == "a" else ["class"] if tag == "code" and attrs else []), (tag, attrs)
        self.attrs.extend(value or "" for _, value in attrs)
        if tag == "a":
            href = attrs[0][1] or ""
            assert href.lower().startswith(("http://", "https://", "mailto:", "tg://")), href
        assert not {"code", "pre"} & set(self.stack) or (tag == "code" and self.stack[-1:] == ["pre"]), self.stack
        assert not (tag in ("a", "code", "pre") and "a" in self.stack), self.stack
        assert not (tag in ("blockquote", "pre") and "blockquote" in self.stack), self.stack
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise AssertionError(f"self-closing tag {tag}")


def check_valid(markup: str) -> list[str]:
    """Parse `markup`, assert it is valid Telegram HTML, return its attribute values."""
    assert re.search(r"&(?!amp;|lt;|gt;|quot;|#x27;)", markup) is None, markup
    checker = _Checker()
    checker.feed(markup)
    checker.close()
    assert checker.stack == [], markup
    return checker.attrs


def assert_nothing_lost(source: str, markup: str) -> None:
    attrs = check_valid(markup)
    have = Counter(ch for ch in plain_text(markup) + " ".join(attrs) if ch.isalnum())
    source = FENCE_INFO.sub(r"\1", source)  # the language of an empty code block may go with it
    want = Counter(ch for ch in source if ch.isalnum())
    assert not want - have, (source, markup)


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("Hello world", "Hello world"),
        ("one\ntwo\n\nthree", "one\ntwo\n\nthree"),
        ("**bold** and __bold__", "<b>bold</b> and <b>bold</b>"),
        ("*italic* and _italic_", "<i>italic</i> and <i>italic</i>"),
        ("***both***", "<i><b>both</b></i>"),
        ("**bold *nested* bold**", "<b>bold <i>nested</i> bold</b>"),
        ("~~gone~~", "<s>gone</s>"),
        ("a ||secret|| b", "a <tg-spoiler>secret</tg-spoiler> b"),
        ("use `x < y && z`", "use <code>x &lt; y &amp;&amp; z</code>"),
        ("``a ` b``", "<code>a ` b</code>"),
        (
            "```python\ndef f():\n    return 1 < 2\n```",
            '<pre><code class="language-python">def f():\n    return 1 &lt; 2</code></pre>',
        ),
        ("```\nplain\n```", "<pre>plain</pre>"),
        ("~~~sh\nls\n~~~", '<pre><code class="language-sh">ls</code></pre>'),
        ("text\n\n    indented code\n    more", "text\n\n<pre>indented code\nmore</pre>"),
        ("[site](https://example.com)", '<a href="https://example.com">site</a>'),
        ('[q](https://e.com/?a=1&b="2")', '<a href="https://e.com/?a=1&amp;b=&quot;2&quot;">q</a>'),
        (
            "[wiki](https://en.wikipedia.org/wiki/Foo_(bar))",
            '<a href="https://en.wikipedia.org/wiki/Foo_(bar)">wiki</a>',
        ),
        (
            "[mail](mailto:a@b.c) [me](tg://user?id=1)",
            '<a href="mailto:a@b.c">mail</a> <a href="tg://user?id=1">me</a>',
        ),
        ('[**b** link](https://e.com "title")', '<a href="https://e.com"><b>b</b> link</a>'),
        ("[`code`](https://e.com)", '<a href="https://e.com">code</a>'),
        ("[x](javascript:alert(1))", "x (javascript:alert(1))"),
        ("<https://e.com/a_b>", '<a href="https://e.com/a_b">https://e.com/a_b</a>'),
        ("see https://e.com/a_b_c/_x_ now", "see https://e.com/a_b_c/_x_ now"),
        ("(https://e.com/x_(y))", "(https://e.com/x_(y))"),
        ("# Title", "<b>Title</b>"),
        ("## **Title** ##", "<b>Title</b>"),
        ("Title\n=====\nbody", "<b>Title</b>\nbody"),
        ("#hashtag", "#hashtag"),
        ("- one\n- two\n  - nested\n    - deeper", "• one\n• two\n  ◦ nested\n    ▪ deeper"),
        ("* a\n+ b", "• a\n• b"),
        ("1. first\n2. second\n   1) inner", "1. first\n2. second\n  1) inner"),
        ("- item\n  continued", "• item\n  continued"),
        ("Intro:\n- a\n\nAfter", "Intro:\n• a\n\nAfter"),
        ("> quoted *text*\n> line two", "<blockquote>quoted <i>text</i>\nline two</blockquote>"),
        ("> > nested", "<blockquote>nested</blockquote>"),
        ("> ```\n> code\n> ```", "<blockquote><code>code</code></blockquote>"),
        ("| a | b |\n|---|:-:|\n| 1 | <2> |", "<pre>| a | b |\n|---|:-:|\n| 1 | &lt;2&gt; |</pre>"),
        ("above\n\n---\n\nbelow", "above\n\n──────────\n\nbelow"),
        ("***", "──────────"),
        ("\\*not italic\\* \\# \\[x\\]", "*not italic* # [x]"),
        ("\\# not a heading", "# not a heading"),
        ("line\\\nbreak", "line\nbreak"),
        ("snake_case_name and __init__ here", "snake_case_name and <b>init</b> here"),
        ("my_var_name_", "my_var_name_"),
        ("2*3*4 = 24 and 2 * 3", "2*3*4 = 24 and 2 * 3"),
        ("**unclosed bold", "**unclosed bold"),
        ("a `stray backtick", "a `stray backtick"),
        ("```\nnever closed\n*x*", "<pre>never closed\n*x*</pre>"),
        ("<script>alert('x')</script>", "&lt;script&gt;alert('x')&lt;/script&gt;"),
        ("<b>fake</b> & co", "&lt;b&gt;fake&lt;/b&gt; &amp; co"),
        ("😀 **\U0001d4b3 bold** 👍🏽", "😀 <b>\U0001d4b3 bold</b> 👍🏽"),
        ("שלום **עולם**", "שלום <b>עולם</b>"),
        ("这是**粗体**文字", "这是<b>粗体</b>文字"),
        ("a || b and ~ c", "a || b and ~ c"),
        ("", ""),
    ],
)
def test_conversion(markdown: str, expected: str) -> None:
    html_text = to_telegram_html(markdown)
    assert html_text == expected
    check_valid(html_text)


HOSTILE = [
    "**",
    "****",
    "*a **b* c**",
    "**a *b** c*",
    "_a *b_ c*",
    "~~a **b~~ c**",
    "||a *b|| c*",
    "[a **b](https://x.y) c**",
    "[a](https://x.y",
    "[a](<https://x y>)",
    "[[[[[]]]](((((",
    "![img](https://x.y/i.png)",
    "![](javascript:x)",
    '[a]("onclick=x)',
    '[a](https://x.y/"><script>)',
    "<a href='https://x.y'>t</a>",
    "</b></i></code>",
    "<<<>>>&&&;&amp;&#x27;&lt;",
    "&#0; &#xD800; &bogus;",
    "``` ``` ```",
    "`` ` ``` ` ``",
    "```py\n```\n```",
    "~~~\n```\n~~~",
    "> ```\n> unterminated",
    "> # head\n> - item\n> | a | b |\n> |---|---|",
    "- ```\n  code in list\n  ```",
    "1. **a\n2. b**",
    "# **",
    "#",
    ">",
    "- ",
    "|",
    "| a |\n|---|",
    "\\",
    "\\\\*a*",
    "a\x00b\x1bc\u200bd\ufeff",
    "\ud83d lone surrogate",
    "e\u0301\u0301 combining ‮rtl override‬",
    "👨‍👩‍👧‍👦 **family** 🏳️‍🌈",
    "https://x.com/**a**_b_(c)",
    "www.example.com/_x_",
    "__init__.py and **kwargs and *args",
    "* * *\n- - -\n___",
    "Setext\n---",
    "  \t  \n\n\n",
]


@pytest.mark.parametrize("markdown", HOSTILE)
def test_hostile_inputs_render_valid(markdown: str) -> None:
    assert_nothing_lost(markdown, to_telegram_html(markdown))


def test_fuzz_renders_valid() -> None:
    rng = random.Random(20240601)
    alphabet = [*"*_`~[]()<>&|#>!-\\", "\n", "\n\n", " ", "  ", "    ", "```", "**", "~~", "||", "1. ", "- "]
    words = ["ab", "cd", "x_y", "2", "http://e.co/a_b", "😀", "ש", "a&b", "https://e.co/(x)", "mailto:a@b.c"]
    for _ in range(400):
        pieces = [rng.choice(alphabet) if rng.random() < 0.6 else rng.choice(words) for _ in range(rng.randint(1, 40))]
        source = "".join(pieces)
        assert_nothing_lost(source, to_telegram_html(source))


def test_utf16_len() -> None:
    assert utf16_len("abc") == 3
    assert utf16_len("😀") == 2
    assert utf16_len("é𝒳") == 3


def test_plain_text() -> None:
    assert plain_text('<b>a &amp; b</b> <a href="https://x.y">&lt;link&gt;</a>') == "a & b <link>"


def _long_answer() -> str:
    paragraphs = []
    for n in range(60):
        paragraphs.append(f"Paragraph {n} with **bold {n}** and *italic* text 😀 and `code_{n}` " + "word " * 20)
    paragraphs.insert(
        30, "```python\n" + "\n".join(f"value_{k} = {k} * 2  # <comment> & more" for k in range(150)) + "\n```"
    )
    return "\n\n".join(paragraphs)


def test_split_long_answer() -> None:
    markdown = _long_answer()
    rendered = to_telegram_html(markdown)
    assert len(plain_text(rendered)) > 10_000
    parts = split_message(rendered)
    assert len(parts) >= 3
    for part in parts:
        check_valid(part)
        assert 0 < utf16_len(plain_text(part)) <= 4096
        assert plain_text(part).strip()
    joined = "".join("".join(plain_text(part).split()) for part in parts)
    assert joined == "".join(plain_text(rendered).split())


def test_split_counts_utf16_and_entities() -> None:
    rendered = to_telegram_html("😀&" * 3000)
    parts = split_message(rendered, limit=1000)
    for part in parts:
        assert utf16_len(plain_text(part)) <= 1000
        assert "&amp;" in part and "😀" in part
        check_valid(part)
    assert "".join(plain_text(part) for part in parts) == "😀&" * 3000


def test_split_code_block_keeps_language() -> None:
    code = "\n".join(f"    line_{k} = {k}" for k in range(400))
    rendered = to_telegram_html(f"```python\n{code}\n```")
    parts = split_message(rendered, limit=1000)
    assert len(parts) > 3
    for part in parts:
        check_valid(part)
        assert part.startswith('<pre><code class="language-python">')
        assert part.endswith("</code></pre>")
        assert utf16_len(plain_text(part)) <= 1000
        assert "\n    line_" in part  # indentation kept, cuts at line ends
    assert "\n".join(plain_text(part) for part in parts) == code


def test_split_prefers_paragraph_boundary() -> None:
    first = "alpha " * 120 + "end."
    second = "beta\n" * 30 + "gamma " * 200
    rendered = to_telegram_html(first + "\n\n" + second)
    parts = split_message(rendered, limit=1000)
    assert plain_text(parts[0]) == first.strip()
    assert plain_text(parts[1]).startswith("beta\nbeta")


def test_split_falls_back_to_lines_spaces_and_words() -> None:
    lines = "\n".join(["x" * 30] * 10)
    assert plain_text(split_message(lines, limit=100)[0]) == "\n".join(["x" * 30] * 3)
    spaced = " ".join(["y" * 9] * 30)
    assert all(not p.startswith(" ") and len(p) <= 100 for p in split_message(spaced, limit=100))
    assert plain_text(split_message(spaced, limit=100)[0]) == " ".join(["y" * 9] * 10)
    word = "z" * 250
    assert [len(p) for p in split_message(word, limit=100)] == [100, 100, 50]


def test_split_reopens_formatting_and_never_cuts_tags() -> None:
    rendered = to_telegram_html("**" + ("bold words " * 30).strip() + "** [link text here](https://e.com/a_b)")
    parts = split_message(rendered, limit=60)
    assert len(parts) > 4
    for part in parts:
        check_valid(part)
        assert utf16_len(plain_text(part)) <= 60
    assert all(part.startswith("<b>") for part in parts[:-1])
    assert "".join("".join(plain_text(p).split()) for p in parts) == "".join(plain_text(rendered).split())


def test_split_keeps_emoji_sequences_and_drops_empty_parts() -> None:
    family = "👨\u200d👩\u200d👧"
    parts = split_message(family * 20, limit=12)
    assert all(plain_text(p).startswith("👨") for p in parts)
    assert split_message("") == []
    assert split_message("\n\n   \n") == []
    assert split_message("<b>   </b>\n\nhi") == ["hi"]


def test_short_message_is_one_part() -> None:
    rendered = to_telegram_html("**hi** there")
    assert split_message(rendered) == [rendered]


@pytest.mark.parametrize("markdown", HOSTILE)
def test_split_hostile_inputs_stay_valid(markdown: str) -> None:
    rendered = to_telegram_html(markdown * 5)
    for part in split_message(rendered, limit=7):
        check_valid(part)
        assert utf16_len(plain_text(part)) <= 7


# -- size and depth (issue 9, item 13) --------------------------------------------------------------------------


def mixed_markdown(size: int) -> str:
    """Every kind of block and inline mark, repeated to `size` characters (also used by bench/render_bench.py)."""
    blocks = [
        "Some **bold**, *italic*, `code`, a [link](https://e.com/x) and https://e.com/y in a sentence.",
        "- a list item with _emphasis_\n  - a nested one",
        "> a quote\n> > a deeper one",
        "```python\nprint('hi')  # <tag> & more\n```",
        "[[[ brackets ((( stars * * ** ___ <<< >>> &&& `` ` ```` 😀👍🏽",
        "| a | b |\n|---|---|\n| 1 | 2 |",
    ]
    text, k = [], 0
    while sum(map(len, text)) < size:
        text.append(blocks[k % len(blocks)])
        k += 1
    return "\n\n".join(text)


def test_a_megabyte_renders_and_splits_into_valid_parts() -> None:
    """Before: a 1 MB answer took 102 s of event-loop CPU; bench/render_bench.py measures the time it takes now."""
    parts = split_message(to_telegram_html(mixed_markdown(1_000_000)))
    assert len(parts) > 200 and all(utf16_len(plain_text(part)) <= 4096 for part in parts)
    check_valid(parts[0])
    check_valid(parts[-1])


def test_ten_thousand_nested_quotes_render() -> None:
    """Before: 1,000 levels raised RecursionError and the answer was lost. Deep levels are read flat."""
    deep = to_telegram_html("> " * 10_000 + "deep")
    assert deep == "<blockquote>deep</blockquote>"
    stairs = "\n".join("> " * depth + f"level {depth}" for depth in range(1, 1_001))
    rendered = to_telegram_html(stairs)
    check_valid(rendered)
    assert rendered.startswith("<blockquote>level 1") and "level 1000" in rendered
