"""Token counts with the o200k encoding, offline (bpe-openai bundles it; tiktoken would download it).

Owns the per-message overhead and how tool definitions are counted. Imports nothing from the host.
"""

import functools
import json
import warnings
from typing import Any

ENCODING = "o200k_base"
MESSAGE_OVERHEAD = 3
"""Tokens a chat template adds around each message besides its fields (OpenAI's cookbook counts 3)."""
_CHUNK_CHARS = 40_000
"""bpe-openai refuses one call of more than 200,000 tokens; a character is at most 4 byte tokens."""


@functools.cache
def _encoding() -> Any:
    """Loaded on first use (about half a second); bpe-openai 0.1.4 warns about its own importlib use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import bpe_openai  # type: ignore[import-untyped]  # ships no py.typed marker

        return bpe_openai.get_encoding(ENCODING)


def count_tokens(text: str) -> int:
    """Tokens in `text`, special-token look-alikes counted as ordinary text (they are user input)."""
    encoding = _encoding()
    return sum(
        len(encoding.encode_ordinary(text[start : start + _CHUNK_CHARS])) for start in range(0, len(text), _CHUNK_CHARS)
    )


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
