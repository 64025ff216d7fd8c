"""Token estimates for the context budget: a little above what o200k (gpt-oss, OpenAI) would count.

An exact o200k tokenizer costs about 130 MB of memory for its tables, and other model families (Llama, Qwen,
Mistral...) tokenize differently anyway, so the window is budgeted with an estimate instead. Text is cut into
pieces the way o200k's pre-tokenizer cuts it (words with their leading space, runs of up to three digits,
punctuation, whitespace), and each piece is priced by its kind; on prose, code, JSON, Cyrillic, CJK, numbers
and emoji this lands between 1.0 and 1.25 times the o200k count (tests/engine/test_tokens.py), so a window
that fits the estimate fits the model. Imports nothing from the host.
"""

import json
import math
import re
from typing import Any

MESSAGE_OVERHEAD = 3
"""Tokens a chat template adds around each message besides its fields (OpenAI's cookbook counts 3)."""

_PIECE = re.compile(r" ?[^\W\d]+| ?\d{1,3}| ?[^\s\w]+|\s+")
_WIDE = 0x2E80  # CJK and later scripts: o200k spends more than half a token per character
_LETTERS_PER_TOKEN = 6  # an ASCII word: most words up to six letters are one token
_OTHER_LETTERS_PER_TOKEN = 4  # Cyrillic, Greek, accented Latin...
_SPACES_PER_TOKEN = 16


def count_tokens(text: str) -> int:
    """Estimated tokens in `text` (0 for ""); see the module docstring for how far it may be off."""
    return sum(_price(match.group()) for match in _PIECE.finditer(text))


def _price(piece: str) -> int:
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
        return math.ceil(wide * 0.6) + math.ceil((len(core) - wide) / _OTHER_LETTERS_PER_TOKEN)
    if core.isascii():
        return math.ceil(len(core) / 3)  # punctuation runs such as `":"` or `**` are often one token
    return math.ceil(len(core.encode()) / 3)  # symbols and emoji: several bytes each


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
