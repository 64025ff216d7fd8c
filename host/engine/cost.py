"""What a model call cost when the server does not say (no `usage` in its answer): our own count (host.tokens) of
the messages sent, the tool definitions offered, and the text and tool calls that came back."""

import json
from collections.abc import Sequence

from openai.types.chat import ChatCompletionMessageParam

from host.engine.llm import Completion, Usage
from host.tokens import count_message_tokens, count_tokens


def estimated_usage(messages: Sequence[ChatCompletionMessageParam], tools_tokens: int, completion: Completion) -> Usage:
    sent = sum(
        count_message_tokens(
            str(message["role"]),
            content if isinstance(content := message.get("content"), str) else json.dumps(content or ""),
            json.dumps(message.get("tool_calls")) if message.get("tool_calls") else None,
        )
        for message in messages
    )
    answered = count_tokens(completion.text) + sum(
        count_tokens(call.name) + count_tokens(call.arguments) for call in completion.tool_calls
    )
    return Usage(sent + tools_tokens, answered)
