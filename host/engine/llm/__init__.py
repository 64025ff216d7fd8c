"""The one model client for any OpenAI-compatible chat-completions server (Ollama, Ollama Cloud, vLLM).

`client` owns the calls (streaming or whole, retries, timeouts, the concurrency cap), `wire` the wire format
(server-sent events, tool-call assembly, reasoning fields, size caps), `failures` the classification of what went
wrong, `values` what a turn is made of. Imports only host.errors and host.redact from the host: never host.mcp,
host.storage or host.telegram.
"""

from host.engine.llm.client import ChatModel
from host.engine.llm.values import Completion, ModelEvent, ModelSettings, ReasoningDelta, TextDelta, ToolCall, Usage
from host.errors import ModelUnavailable

__all__ = [
    "ChatModel",
    "Completion",
    "ModelEvent",
    "ModelSettings",
    "ModelUnavailable",
    "ReasoningDelta",
    "TextDelta",
    "ToolCall",
    "Usage",
]
