"""Token counts with o200k, offline: known ids from tiktoken's o200k_base, messages and tool definitions."""

import json

import pytest

from host.engine.tokens import MESSAGE_OVERHEAD, count_message_tokens, count_tokens, count_tools_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),  # o200k ids [24912, 2375]
        ("tiktoken is great!", 6),  # tiktoken's README example: [83, 8251, 2488, 382, 2212, 0]
        ("Hello, world!", 4),
        ("Привет, мир!", 5),
        ("<|endoftext|>", 7),  # a special token typed by a user is plain text, not a control token
    ],
)
def test_known_counts(text: str, expected: int) -> None:
    assert count_tokens(text) == expected


def test_long_texts_are_counted_in_pieces_without_failing() -> None:
    assert count_tokens("x" * 400_000) == 50_000
    assert count_tokens("😀" * 100_000) == 100_000


def test_a_message_costs_its_fields_plus_a_fixed_overhead() -> None:
    assert count_message_tokens("user", "hello world", None) == MESSAGE_OVERHEAD + 1 + 2
    assert count_message_tokens("assistant", None, None) == MESSAGE_OVERHEAD + 1
    calls = json.dumps([{"id": "call_1", "type": "function", "function": {"name": "fs__read", "arguments": "{}"}}])
    with_calls = count_message_tokens("assistant", None, calls)
    assert with_calls == MESSAGE_OVERHEAD + 1 + count_tokens(calls)
    assert count_message_tokens("tool", "ok", None, tool_call_id="call_1") > count_message_tokens("tool", "ok", None)


def test_tool_definitions_are_counted_on_their_json() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "filesystem__read_file",
            "description": "Read a UTF-8 text file from the workspace.",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
        },
    }
    one = count_tools_tokens([tool])
    assert count_tools_tokens([]) == 0
    assert one == count_tokens(json.dumps([tool], separators=(",", ":")))
    assert 20 < one < 80
    assert count_tools_tokens([tool, tool]) > 2 * one - 5
