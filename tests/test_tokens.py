"""The token estimate against o200k: not below the real count (5% at most) on the kinds of text a chat and its
tool results carry, and not far above it. The exact counts were measured with o200k_base (bpe-openai 0.1.4)
once, when the estimate replaced it."""

import json

import pytest

from host.tokens import MESSAGE_OVERHEAD, count_message_tokens, count_tokens, count_tools_tokens

SAMPLES = {
    "prose": (
        "The bot answers in the chat where it was asked. When a tool runs, the user sees a short line saying which "
        "server and which tool, and the answer replaces it once the model has finished. Long answers are split "
        "between paragraphs."
    ),
    "code": (
        "async def turn(self, chat_id: int, text: str) -> AsyncIterator[Event]:\n"
        '    """Answer one message."""\n'
        "    conversation_id = await self.store.current_conversation(chat_id)\n"
        "    for step in range(1, self.limit + 2):\n"
        "        yield await self._ask(conversation_id, step)\n"
    ),
    "json": json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": "filesystem__read_file",
                    "description": "Read a UTF-8 text file from the workspace.",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
                },
            }
        ],
        separators=(",", ":"),
    ),
    "russian": (
        "Привет! Как дела? Сегодня мы поговорим о том, как работает токенизация текста в больших языковых моделях."  # noqa: RUF001
    ),
    "chinese": "今天我们来讨论大型语言模型中的文本分词是如何工作的。这是一个非常有趣的话题。",
    "german": "Die Tokenisierung von Texten in großen Sprachmodellen ist ein spannendes Thema für Entwickler.",
    "numbers": "Order 7919 shipped 2026-11-25 at 14:05; total 1234567.89 EUR, 42 items, ids 100200300 and 17.",
    "emoji": "Great job 🎉👍😀 see you tomorrow 🚀",
    "markdown": (
        "## Results\n\n| name | value |\n|---|---|\n| **speed** | `116 turns/s` |\n\n"
        "- first item\n- second item with a [link](https://example.com/path?q=1)\n"
    ),
    "snake": "user_id chat_id max_history_messages LLM_MAX_CONTEXT_TOKENS __init__ snake_case_names_are_common",
    "base64": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "jwt": (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5"
        "MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    ),
    "ids": "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 request 3f2b8c1e-7d4a-4e9b-a1c2-5d6e7f8a9b0c",
    "greek": "Η γρήγορη καφέ αλεπού πηδά πάνω από τον τεμπέλη σκύλο και τρέχει στο δάσος.",  # noqa: RUF001
}

O200K = {
    "prose": 47,
    "code": 65,
    "json": 49,
    "russian": 26,
    "chinese": 23,
    "german": 19,
    "numbers": 40,
    "emoji": 11,
    "markdown": 45,
    "snake": 22,
    "base64": 52,
    "jwt": 104,
    "ids": 61,
    "greek": 33,
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_the_estimate_is_near_or_above_o200k(kind: str) -> None:
    ratio = count_tokens(SAMPLES[kind]) / O200K[kind]
    assert 0.95 <= ratio <= 1.5, f"{kind}: {count_tokens(SAMPLES[kind])} estimated, {O200K[kind]} by o200k"


def test_empty_and_long_texts() -> None:
    assert count_tokens("") == 0
    assert count_tokens("   ") == 1
    assert 50_000 <= count_tokens("word " * 50_000) <= 60_000


def test_a_message_costs_its_fields_plus_a_fixed_overhead() -> None:
    hello = count_tokens("hello world")
    assert count_message_tokens("user", "hello world", None) == MESSAGE_OVERHEAD + count_tokens("user") + hello
    assert count_message_tokens("assistant", None, None) == MESSAGE_OVERHEAD + count_tokens("assistant")
    calls = json.dumps([{"id": "call_1", "type": "function", "function": {"name": "fs__read", "arguments": "{}"}}])
    with_calls = count_message_tokens("assistant", None, calls)
    assert with_calls == count_message_tokens("assistant", None, None) + count_tokens(calls)
    assert count_message_tokens("tool", "ok", None, tool_call_id="call_1") > count_message_tokens("tool", "ok", None)


def test_tool_definitions_are_counted_on_their_json() -> None:
    tool = json.loads(SAMPLES["json"])[0]
    one = count_tools_tokens([tool])
    assert count_tools_tokens([]) == 0
    assert one == count_tokens(json.dumps([tool], separators=(",", ":")))
    assert count_tools_tokens([tool, tool]) > 2 * one - 5
