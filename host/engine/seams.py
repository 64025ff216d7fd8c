"""What the engine needs from the parts around it, as Protocols: the tool router (the MCP registry), the model
(host.engine.llm.ChatModel) and the conversations (host.storage.ConversationStore). The composition root
(host/app.py) passes the real ones; nothing here imports their implementations beyond the values they exchange.
"""

from collections.abc import AsyncGenerator
from typing import Any, Protocol

from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from host.engine.llm import ModelEvent
from host.mcp.registry import Catalogue
from host.mcp.tools import ToolResult
from host.storage.window import StoredMessage


class ToolRouter(Protocol):
    """The MCP registry: the frozen catalogue, and calls by model-facing name."""

    async def catalogue(self, chat_id: int = 0) -> Catalogue: ...
    async def call(self, name: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult: ...


class Model(Protocol):
    """One streamed chat completion: deltas as they come, then one Completion. Raises ModelUnavailable. `model` and
    `temperature` override the client's own for this call (a chat's choice); None keeps them."""

    def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionToolParam] | None = None,
        *,
        model: str | None = None,
        temperature: float | None = None,
    ) -> AsyncGenerator[ModelEvent, None]: ...


class Conversations(Protocol):
    """Conversations and their messages. Raises StorageError."""

    async def begin_turn(
        self,
        chat_id: int,
        topic_id: int,
        message: StoredMessage,
        user_id: int | None,
        *,
        update_id: int | None = None,
        route: dict[str, Any] | None = None,
    ) -> int | None: ...
    async def append(self, conversation_id: int, message: StoredMessage, user_id: int | None = None) -> int: ...
    async def window(self, conversation_id: int, *, max_messages: int, max_tokens: int) -> list[StoredMessage]: ...
    async def reset(self, chat_id: int, topic_id: int = 0) -> int: ...
