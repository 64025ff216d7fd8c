"""The conversation engine: store the user's message, ask the model, run the tools it asks for through the
tool router, repeat until it answers or the step limit, and report every step as an event.

Imports the model client, tokens, prompt, the MCP host's value types and the storage layer; never telegram.
"""

import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import anyio
import structlog
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from host.engine.llm import ChatModel, Completion, ReasoningDelta, TextDelta, ToolCall, Usage
from host.engine.prompt import system_prompt
from host.engine.tokens import count_message_tokens, count_tokens, count_tools_tokens
from host.errors import ToolError
from host.mcp.registry import CatalogueEntry
from host.mcp.tools import ToolResult
from host.storage import ConversationStore, StoredMessage

log = structlog.get_logger("host.engine")


class ToolRouter(Protocol):
    """What the engine needs from the MCP registry."""

    async def catalogue(self, chat_id: int = 0) -> list[CatalogueEntry]: ...
    async def call(self, name: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult: ...
    async def instructions(self, chat_id: int = 0) -> dict[str, str]: ...


@dataclass(frozen=True, slots=True)
class EngineSettings:
    system_prompt: str
    max_tool_steps: int = 8
    max_context_tokens: int = 8000
    max_history_messages: int = 50
    answer_tokens: int = 2048  # kept free in the context window for the model's answer


@dataclass(frozen=True, slots=True)
class ToolStarted:
    call_id: str
    server: str
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolFinished:
    call_id: str
    server: str
    tool: str
    ok: bool
    seconds: float


@dataclass(frozen=True, slots=True)
class TurnFinished:
    text: str
    usage: Usage
    tool_calls: int
    steps: int


EngineEvent = TextDelta | ReasoningDelta | ToolStarted | ToolFinished | TurnFinished


@dataclass(slots=True)
class _Turn:
    """The state of one turn while it runs."""

    chat_id: int
    conversation_id: int
    messages: list[ChatCompletionMessageParam]
    tools: list[ChatCompletionToolParam]
    by_name: dict[str, CatalogueEntry]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    started: float = field(default_factory=time.perf_counter)


class Engine:
    """One engine serves every chat; turns of different chats may run concurrently."""

    def __init__(self, model: ChatModel, tools: ToolRouter, store: ConversationStore, settings: EngineSettings):
        self.model = model
        self.tools = tools
        self.store = store
        self.settings = settings

    async def reset(self, chat_id: int, topic_id: int = 0) -> None:
        """Start a new conversation in the chat; the old one stays stored but leaves the window."""
        await self.store.reset(chat_id, topic_id)

    async def turn(
        self, chat_id: int, text: str, *, user_id: int | None = None, topic_id: int = 0
    ) -> AsyncIterator[EngineEvent]:
        """Answer one user message. The message is stored before the model is called, so a failure that ends
        the turn (ModelUnavailable, StorageError) never loses it."""
        conversation_id = await self.store.current_conversation(chat_id, topic_id)
        if user_id is not None:
            await self.store.touch_user(user_id)
        user = StoredMessage(
            role="user",
            content=text,
            tool_calls=None,
            tool_call_id=None,
            token_count=count_message_tokens("user", text, None),
        )
        await self.store.append(conversation_id, user, user_id=user_id)
        turn = await self._prepare(chat_id, conversation_id)
        with structlog.contextvars.bound_contextvars(chat_id=chat_id):
            limit = self.settings.max_tool_steps
            for step in range(1, limit + 2):
                answer_now = step > limit  # past the step limit the model must answer without tools
                replies: list[Completion] = []
                async for delta in self._ask(turn, replies, tool_choice="none" if answer_now else None):
                    yield delta
                completion = replies[0]
                self._count(turn, completion)
                if answer_now or not completion.tool_calls:
                    yield await self._finish(turn, completion.text, step)
                    return
                await self._remember_call(turn, completion)
                async for tool_event in self._run_tools(turn, completion.tool_calls):
                    yield tool_event

    async def _ask(
        self, turn: _Turn, replies: list[Completion], tool_choice: Literal["none"] | None
    ) -> AsyncIterator[TextDelta | ReasoningDelta]:
        """One model turn: yields its deltas and appends its Completion to `replies`."""
        async with aclosing(self.model.complete(turn.messages, turn.tools or None, tool_choice=tool_choice)) as events:
            async for event in events:
                if isinstance(event, Completion):
                    replies.append(event)
                else:
                    yield event

    async def _prepare(self, chat_id: int, conversation_id: int) -> _Turn:
        catalogue = await self.tools.catalogue(chat_id)
        tools = [entry.openai() for entry in catalogue]
        prompt = system_prompt(self.settings.system_prompt, datetime.now(UTC), await self.tools.instructions(chat_id))
        budget = (
            self.settings.max_context_tokens
            - self.settings.answer_tokens
            - count_tokens(prompt)
            - count_tools_tokens([dict(tool) for tool in tools])
        )
        window = await self.store.window(
            conversation_id, max_messages=self.settings.max_history_messages, max_tokens=max(budget, 0)
        )
        messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": prompt}]
        messages += [_as_param(message) for message in window]
        return _Turn(chat_id, conversation_id, messages, tools, {entry.name: entry for entry in catalogue})

    def _count(self, turn: _Turn, completion: Completion) -> None:
        if completion.usage is not None:
            turn.prompt_tokens += completion.usage.prompt_tokens
            turn.completion_tokens += completion.usage.completion_tokens

    async def _finish(self, turn: _Turn, text: str, steps: int) -> TurnFinished:
        answer = StoredMessage(
            role="assistant",
            content=text,
            tool_calls=None,
            tool_call_id=None,
            token_count=count_message_tokens("assistant", text, None),
        )
        await self.store.append(turn.conversation_id, answer)
        usage = Usage(prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens)
        seconds = round(time.perf_counter() - turn.started, 3)
        log.info(
            "turn_finished",
            steps=steps,
            tool_calls=turn.tool_calls,
            seconds=seconds,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
        )
        return TurnFinished(text=text, usage=usage, tool_calls=turn.tool_calls, steps=steps)

    async def _remember_call(self, turn: _Turn, completion: Completion) -> None:
        calls = [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            for call in completion.tool_calls
        ]
        text = completion.text or ""
        stored = StoredMessage(
            role="assistant",
            content=text,
            tool_calls=calls,
            tool_call_id=None,
            token_count=count_message_tokens("assistant", text, json.dumps(calls)),
        )
        await self.store.append(turn.conversation_id, stored)
        turn.messages.append({"role": "assistant", "content": text, "tool_calls": calls})  # type: ignore[typeddict-item]

    async def _run_tools(self, turn: _Turn, calls: tuple[ToolCall, ...]) -> AsyncIterator[EngineEvent]:
        """Run the step's tool calls concurrently; report each as it finishes; results go back in the order asked."""
        results: dict[str, str] = {}
        send, receive = anyio.create_memory_object_stream[ToolFinished](len(calls))
        for call in calls:
            entry = turn.by_name.get(call.name)
            server, tool = (entry.spec.server, entry.spec.name) if entry else ("?", call.name)
            yield ToolStarted(call.id, server, tool, _arguments(call.arguments) or {})
        async with anyio.create_task_group() as tasks, send, receive:
            for call in calls:
                tasks.start_soon(self._run_one, turn, call, results, send.clone())
            send.close()
            async for finished in receive:
                yield finished
        turn.tool_calls += len(calls)
        for call in calls:
            content = results[call.id]
            stored = StoredMessage(
                role="tool",
                content=content,
                tool_calls=None,
                tool_call_id=call.id,
                token_count=count_message_tokens("tool", content, None),
            )
            await self.store.append(turn.conversation_id, stored)
            turn.messages.append({"role": "tool", "tool_call_id": call.id, "content": content})

    async def _run_one(
        self, turn: _Turn, call: ToolCall, results: dict[str, str], send: anyio.abc.ObjectSendStream[ToolFinished]
    ) -> None:
        started = time.perf_counter()
        entry = turn.by_name.get(call.name)
        server, tool = (entry.spec.server, entry.spec.name) if entry else ("?", call.name)
        arguments = _arguments(call.arguments)
        ok = False
        if arguments is None:
            content = f"Error: the arguments are not a JSON object: {call.arguments[:200]!r}. Call the tool again."
        else:
            try:
                result = await self.tools.call(call.name, arguments, turn.chat_id)
            except ToolError as exc:
                content = f"Error: {exc}"
            else:
                ok = not result.is_error
                content = result.text() if ok else f"Error: {result.text()}"
        results[call.id] = content
        async with send:
            await send.send(ToolFinished(call.id, server, tool, ok, round(time.perf_counter() - started, 3)))


def _arguments(text: str) -> dict[str, Any] | None:
    """The model's arguments as a dict; empty text is no arguments; anything but an object is None."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _as_param(message: StoredMessage) -> ChatCompletionMessageParam:
    """A stored message as the chat-completions API takes it (assistant content is never null)."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.content or ""}
    if message.role == "assistant":
        param: dict[str, Any] = {"role": "assistant", "content": message.content or ""}
        if message.tool_calls:
            param["tool_calls"] = message.tool_calls
        return param  # type: ignore[return-value]
    return {"role": "user", "content": message.content or ""}  # system messages are never stored
