"""Token estimates for the context budget: a little above what o200k (gpt-oss, OpenAI) would count.

An exact o200k tokenizer costs about 130 MB of memory for its tables, and other model families (Llama, Qwen,
Mistral...) tokenize differently anyway, so the window is budgeted with an estimate instead. Text is cut into
pieces the way o200k's pre-tokenizer cuts it (words with their leading space, runs of up to three digits,
punctuation, whitespace, long runs of id characters), and each piece is priced by its kind. On prose, code,
JSON, Cyrillic, Greek, CJK, numbers, emoji, base64, JWTs and hex ids this lands between 0.95 and 1.5 times the
o200k count (tests/engine/test_tokens.py), mostly 1.0-1.2, so a window that fits the estimate fits the model;
heavily accented text (Polish) and symbol soup (regular expressions, random printable text) can come out 10-20%
low. Imports nothing from the host.
"""

import json
import math
import re
from typing import Any

MESSAGE_OVERHEAD = 3
"""Tokens a chat template adds around each message besides its fields (OpenAI's cookbook counts 3)."""

_WORDS = r" ?[^\W\d]+| ?\d{1,3}| ?[^\s\w]+|\s+"
_PIECE = re.compile(r"[A-Za-z0-9+/=_-]{16,}|" + _WORDS)  # a long run of id characters is priced whole
_PARTS = re.compile(_WORDS)
_HEX = re.compile(r"[0-9a-fA-F-]+")
_WIDE = 0x2E80  # CJK and later scripts: o200k spends more than half a token per character
_LETTERS_PER_TOKEN = 6  # an ASCII word: most words up to six letters are one token
_CYRILLIC_PER_TOKEN = 4  # o200k has many Cyrillic words
_OTHER_LETTERS_PER_TOKEN = 2.5  # Greek, Hebrew, accented Latin...
_SPACES_PER_TOKEN = 16


def count_tokens(text: str) -> int:
    """Estimated tokens in `text` (0 for ""); see the module docstring for how far it may be off."""
    return sum(_price(match.group()) for match in _PIECE.finditer(text))


def _price(piece: str) -> int:
    if len(piece) >= 16 and not piece.isspace() and piece.isascii() and _PARTS.fullmatch(piece) is None:
        return _price_run(piece)
    if piece.isspace():
        return math.ceil(len(piece) / _SPACES_PER_TOKEN)
    core = piece.lstrip(" ")
    spaced = len(core) != len(piece)
    first = core[0]
    if first.isdigit():
        return 1 + spaced  # o200k keeps the space before a number apart
    if first.isalpha() or first == "_":
        if core.isascii():  # snake_case parts count apart; CAPITALS split into shorter tokens
            parts = [part for part in core.split("_") if part]
            edges = core.startswith("_") + core.endswith("_")
            return edges + sum(math.ceil(len(part) / (3 if part.isupper() else _LETTERS_PER_TOKEN)) for part in parts)
        wide = sum(1 for char in core if ord(char) >= _WIDE)
        cyrillic = sum(1 for char in core if "\u0400" <= char <= "\u04ff")
        other = len(core) - wide - cyrillic
        return (
            math.ceil(wide * 0.7)
            + math.ceil(cyrillic / _CYRILLIC_PER_TOKEN)
            + math.ceil(other / _OTHER_LETTERS_PER_TOKEN)
        )
    if core.isascii():
        return math.ceil(len(core) / 3)  # punctuation runs such as `":"` or `**` are often one token
    return math.ceil(len(core.encode()) / 2.5)  # symbols and emoji: several bytes each


def _price_run(run: str) -> int:
    """A long run of letters, digits and `+/=_-`: random-looking ones (keys, base64, JWTs, hex ids) cost about a
    token per 1.4 characters; anything else (snake_case_words, long-numbers) is priced part by part."""
    digits = sum(char.isdigit() for char in run)
    if digits >= 2 and any(char.isupper() for char in run) and any(char.islower() for char in run):
        return math.ceil(len(run) / 1.4)
    if digits >= 2 and _HEX.fullmatch(run):
        return math.ceil(len(run) / 1.4)
    return sum(_price(part.group()) for part in _PARTS.finditer(run))


def count_message_tokens(
    role: str, content: str | None, tool_calls_json: str | None, *, tool_call_id: str | None = None
) -> int:
    """Tokens one chat message costs in the prompt: its role, text, tool calls (as JSON) and the overhead."""
    return (
        MESSAGE_OVERHEAD
        + count_tokens(role)
        + count_tokens(content or "")
        + count_tokens(tool_calls_json or "")
        + count_tokens(tool_call_id or "")
    )


def count_tools_tokens(tools: list[dict[str, Any]]) -> int:
    """Tokens the tool definitions (OpenAI `tools` list) cost, counted on their compact JSON form."""
    if not tools:
        return 0
    return count_tokens(json.dumps(tools, ensure_ascii=False, separators=(",", ":")))
