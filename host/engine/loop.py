"""The conversation engine: store the user's message, ask the model, run the tools it asks for through the
tool router, repeat until it answers or the step limit, and report every step as an event. It also holds a broken
or hostile model to its limits: tool calls per step and per turn, argument sizes, the answer's length, and a user
message that cannot fit the context is answered with a note instead of being sent.

Imports the model client, tokens, prompt, the MCP host's value types and the storage layer; never telegram.
"""

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
import structlog
from openai.types.chat import ChatCompletionMessageParam

from host.engine import search
from host.engine.calls import Call, CallLimits, fit, resolve
from host.engine.cost import estimated_usage
from host.engine.events import EngineEvent, ModelCalled, ToolFinished, ToolStarted, TurnFinished
from host.engine.llm import Completion, ReasoningDelta, TextDelta, Usage
from host.engine.outcomes import empty_answer_note, refusal, turn_summary
from host.engine.prompt import system_prompt
from host.engine.seams import Conversations, Model, ToolRouter
from host.errors import ToolError
from host.mcp.registry import Catalogue
from host.mcp.tools import BinaryPart
from host.storage.preferences import NONE, ChatPreferences
from host.storage.window import StoredMessage
from host.tokens import count_message_tokens, count_tokens

log = structlog.get_logger("host.engine")

MIN_RESULT_TOKENS = 200
CANCELLED = "Error: the tool call was cancelled before it finished."


@dataclass(frozen=True, slots=True)
class EngineSettings:
    system_prompt: str
    max_tool_steps: int = 8
    max_context_tokens: int = 8000
    max_history_messages: int = 50
    answer_tokens: int = 2048  # kept free in the context window for the model's answer
    max_tool_calls_per_step: int = 16
    max_tool_calls_per_turn: int = 64
    max_tool_argument_bytes: int = 64 * 1024
    max_answer_chars: int = 32_000
    max_tool_result_chars: int = 16_000  # MCP_TOOL_RESULT_MAX_CHARS: a result is cut to this and to its share
    tools_share: float = 0.25  # past this share of the context, tool definitions are found with search_tools

    def call_limits(self) -> CallLimits:
        return CallLimits(self.max_tool_calls_per_step, self.max_tool_calls_per_turn, self.max_tool_argument_bytes)


@dataclass(frozen=True, slots=True)
class _Context:
    """What a turn is asked with besides its history: the catalogue, the system prompt, and the tokens left for the
    conversation."""

    catalogue: Catalogue
    prompt: str
    budget: int
    search_room: int = 0  # > 0: the model gets search_tools, and found tools within this many tokens


@dataclass(slots=True)
class _Turn:
    """The state of one turn while it runs."""

    chat_id: int
    conversation_id: int
    messages: list[ChatCompletionMessageParam]
    catalogue: Catalogue
    room: int  # tokens still free in the context for tool results
    preferences: ChatPreferences = NONE  # the chat's model and temperature (None: the client's own)
    search_room: int = 0  # see _Context; what search_tools found is in `found`
    found: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    started: float = field(default_factory=time.perf_counter)


class Engine:
    """One engine serves every chat, and turns of different chats run concurrently. Turns of one chat (and forum
    topic) must run one at a time: the service's ChatQueues orders them."""

    def __init__(self, model: Model, tools: ToolRouter, store: Conversations, settings: EngineSettings):
        self.model = model
        self.tools = tools
        self.store = store
        self.settings = settings

    async def reset(self, chat_id: int, topic_id: int = 0) -> None:
        """Start a new conversation in the chat; the old one stays stored but leaves the window."""
        await self.store.reset(chat_id, topic_id)

    async def turn(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        topic_id: int = 0,
        update_id: int | None = None,
        route: dict[str, Any] | None = None,
        preferences: ChatPreferences = NONE,
    ) -> AsyncGenerator[EngineEvent, None]:
        """Answer one user message. The message is stored before the model is called, so a failure that ends
        the turn (ModelUnavailable, StorageError) never loses it. A consumer that stops early should close the
        generator (`contextlib.aclosing`); whatever tools ran by then is stored with its results.

        `update_id` makes the turn happen once: claimed in the same transaction that stores the message, a turn
        whose update_id was claimed before yields no events at all (a message delivered twice). A message refused
        before it is stored (it cannot fit the context) is not claimed here: the caller claims it. With `route` (the
        front end's data for delivering the reply) the reply is recorded as owed in that transaction too, until the
        front end calls ConversationStore.reply_delivered: a crash before then leaves the message to `resume`.

        `preferences` are the chat's own model, temperature and system prompt (checked by the caller); the prompt
        is added after the operator's and the servers', fenced as the user's text (prompt.system_prompt)."""
        async for event in self._turn(chat_id, topic_id, text, user_id, update_id, route, preferences):
            yield event

    async def resume(
        self,
        chat_id: int,
        topic_id: int,
        conversation_id: int,
        message: StoredMessage,
        preferences: ChatPreferences = NONE,
    ) -> AsyncGenerator[EngineEvent, None]:
        """Answer a user message stored by a turn that never finished (its process died): the turn runs again on
        the stored history, the tool calls it made included, without storing the message again."""
        async for event in self._answer(chat_id, conversation_id, message, user_id=None, preferences=preferences):
            yield event

    async def _turn(
        self,
        chat_id: int,
        topic_id: int,
        text: str,
        user_id: int | None,
        update_id: int | None,
        route: dict[str, Any] | None,
        preferences: ChatPreferences,
    ) -> AsyncIterator[EngineEvent]:
        started = time.perf_counter()

        def summary(outcome: str, error: str | None = None) -> None:  # of a turn that ends before the model is asked
            seconds = time.perf_counter() - started
            turn_summary(outcome, chat_id=chat_id, user_id=user_id, steps=0, tool_calls=0, seconds=seconds, error=error)

        user = _text_message("user", text)
        try:
            context = await self._context(chat_id, preferences)
            fits = user.token_count <= context.budget
            conversation_id = (
                await self.store.begin_turn(chat_id, topic_id, user, user_id, update_id=update_id, route=route)
                if fits
                else None
            )
        except Exception as exc:
            summary("failed", type(exc).__name__)
            raise
        if not fits:
            summary("refused")
            yield refusal(chat_id, user, context.budget)
            return
        if conversation_id is None:
            log.info("turn_repeated", chat_id=chat_id, update_id=update_id)
            return
        async for event in self._answer(
            chat_id, conversation_id, user, context, user_id=user_id, preferences=preferences
        ):
            yield event

    async def _answer(
        self,
        chat_id: int,
        conversation_id: int,
        user: StoredMessage,
        context: _Context | None = None,
        *,
        user_id: int | None,
        preferences: ChatPreferences = NONE,
    ) -> AsyncIterator[EngineEvent]:
        """The model-tool rounds of a stored message; however they end, one `turn_finished` line sums them up."""
        context = context or await self._context(chat_id, preferences)
        turn = await self._prepare(chat_id, conversation_id, user, context)
        turn.preferences = preferences
        limit = self.settings.max_tool_steps
        outcome, error, step = "stopped", None, 0  # "stopped": the consumer closed the turn early
        try:
            for step in range(1, limit + 2):
                answer_now = step > limit  # past the step limit the model must answer, and gets no tools
                replies: list[Completion] = []
                async for delta in self._ask(turn, replies, with_tools=not answer_now):
                    yield delta
                completion = replies[0]
                yield ModelCalled(self._count(turn, completion, with_tools=not answer_now))
                if answer_now or not completion.tool_calls:
                    finished = await self._finish(turn, completion, step)
                    outcome = "answered"
                    yield finished
                    return
                calls = await self._remember_call(turn, completion)
                for call in calls:
                    if call.shown:
                        yield ToolStarted(call.call.id, call.server, call.tool, call.arguments or {})
                for done in await self._run_tools(turn, calls):
                    yield done
        except Exception as exc:
            outcome, error = "failed", type(exc).__name__
            raise
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        finally:
            turn_summary(
                outcome,
                chat_id=chat_id,
                user_id=user_id,
                steps=step,
                tool_calls=turn.tool_calls,
                seconds=time.perf_counter() - turn.started,
                usage=Usage(turn.prompt_tokens, turn.completion_tokens),
                error=error,
            )

    async def _ask(
        self, turn: _Turn, replies: list[Completion], *, with_tools: bool
    ) -> AsyncIterator[TextDelta | ReasoningDelta]:
        """One model turn: yields its deltas (text only up to max_answer_chars) and appends its Completion to
        `replies`."""
        tools = (
            search.offered(turn.catalogue, turn.found, turn.search_room)
            if with_tools and turn.catalogue.tools
            else None
        )
        room = self.settings.max_answer_chars
        chosen = turn.preferences
        asked = self.model.complete(turn.messages, tools, model=chosen.model, temperature=chosen.temperature)
        async with aclosing(asked) as events:
            async for event in events:
                if isinstance(event, Completion):
                    replies.append(event)
                elif isinstance(event, TextDelta):
                    if room > 0:
                        yield event if len(event.text) <= room else TextDelta(event.text[:room])
                    room -= len(event.text)
                else:
                    yield event

    async def _prepare(
        self,
        chat_id: int,
        conversation_id: int,
        user: StoredMessage,
        context: _Context,
    ) -> _Turn:
        budget = context.budget
        window = await self.store.window(
            conversation_id, max_messages=self.settings.max_history_messages, max_tokens=max(budget, 0)
        )
        if not _holds(window, user):  # checked before the turn began; kept as a safety net
            log.warning("context_too_small", chat_id=chat_id, budget=budget, message_tokens=user.token_count)
            window = [user]
        used = sum(message.token_count for message in window)
        messages: list[ChatCompletionMessageParam] = [{"role": "system", "content": context.prompt}]
        messages += [_as_param(message) for message in window]
        room = max(budget - used, 0)
        return _Turn(chat_id, conversation_id, messages, context.catalogue, room, search_room=context.search_room)

    async def _context(self, chat_id: int, preferences: ChatPreferences) -> _Context:
        catalogue = (await self.tools.catalogue(chat_id)).without(preferences.servers_off)  # the chat's /mcp
        prompt = system_prompt(
            self.settings.system_prompt, datetime.now(UTC), catalogue.instructions, preferences.system_prompt
        )
        room = int(self.settings.tools_share * self.settings.max_context_tokens)
        searching = catalogue.tokens > room
        tools = search.TOKENS + room if searching else catalogue.tokens
        budget = self.settings.max_context_tokens - self.settings.answer_tokens - count_tokens(prompt) - tools
        return _Context(catalogue, prompt, budget, room if searching else 0)

    def _count(self, turn: _Turn, completion: Completion, *, with_tools: bool) -> Usage:
        """Add one model call's tokens to the turn's: the server's count, or our estimate when it sends none."""
        usage = completion.usage or estimated_usage(
            turn.messages, turn.catalogue.tokens if with_tools else 0, completion
        )
        turn.prompt_tokens += usage.prompt_tokens
        turn.completion_tokens += usage.completion_tokens
        return usage

    async def _finish(self, turn: _Turn, completion: Completion, steps: int) -> TurnFinished:
        text = completion.text
        limit = self.settings.max_answer_chars
        if len(text) > limit or (completion.cut_at is not None and text.strip()):
            log.warning("answer_cut", chat_id=turn.chat_id, chars=len(text), limit=limit, cut_at=completion.cut_at)
            text = text[:limit]
            text = f"{text}\n\n… (answer cut at {len(text):,} characters)"
        if not text.strip():
            text = empty_answer_note(completion, steps > self.settings.max_tool_steps)
            log.warning("empty_answer", chat_id=turn.chat_id, finish_reason=completion.finish_reason)
        answer = _text_message("assistant", text)
        await self.store.append(turn.conversation_id, answer)
        usage = Usage(prompt_tokens=turn.prompt_tokens, completion_tokens=turn.completion_tokens)
        return TurnFinished(text=text, usage=usage, tool_calls=turn.tool_calls)

    async def _remember_call(self, turn: _Turn, completion: Completion) -> list[Call]:
        """Store the model's tool calls, resolved once (calls.resolve): which run, and which are refused."""
        calls = resolve(
            completion, turn.catalogue.by_name, self.settings.call_limits(), used=turn.tool_calls, chat_id=turn.chat_id
        )
        wire = [call.wire() for call in calls]
        text = completion.text or ""
        stored = StoredMessage(
            role="assistant",
            content=text,
            tool_calls=wire,
            tool_call_id=None,
            token_count=count_message_tokens("assistant", text, json.dumps(wire)),
        )
        await self.store.append(turn.conversation_id, stored)
        turn.messages.append({"role": "assistant", "content": text, "tool_calls": wire})  # type: ignore[typeddict-item]
        return calls

    async def _run_tools(self, turn: _Turn, calls: list[Call]) -> list[ToolFinished]:
        """Run the step's calls concurrently. Their results are stored and given to the model in the order asked,
        also when the turn is cancelled (a missing result is stored as cancelled), so a stored call always
        has all its results. Returns the ToolFinished events in the order the calls ended."""
        results: list[str | None] = [call.refusal for call in calls]
        finished = [ToolFinished(c.call.id, c.server, c.tool, False, 0.0) for c in calls if c.refusal and c.shown]
        try:
            async with anyio.create_task_group() as tasks:
                for index, call in enumerate(calls):
                    if call.refusal is None:
                        tasks.start_soon(self._run_one, turn, call, index, results, finished)
        finally:
            with anyio.CancelScope(shield=True):
                await self._store_results(turn, calls, results)
        turn.tool_calls += sum(call.refusal is None for call in calls)
        return finished

    async def _store_results(self, turn: _Turn, calls: list[Call], results: list[str | None]) -> None:
        share = max(turn.room // max(len(calls), 1), MIN_RESULT_TOKENS)
        for call, result in zip(calls, results, strict=True):
            content = fit(result if result is not None else CANCELLED, share, self.settings.max_tool_result_chars)
            tokens = count_message_tokens("tool", content, None, tool_call_id=call.call.id)
            turn.room = max(turn.room - tokens, 0)
            stored = StoredMessage(
                role="tool", content=content, tool_calls=None, tool_call_id=call.call.id, token_count=tokens
            )
            await self.store.append(turn.conversation_id, stored)
            turn.messages.append({"role": "tool", "tool_call_id": call.call.id, "content": content})

    async def _run_one(
        self, turn: _Turn, call: Call, index: int, results: list[str | None], finished: list[ToolFinished]
    ) -> None:
        started = time.perf_counter()
        ok = False
        media: tuple[BinaryPart, ...] = ()
        if call.arguments is None:
            content = f"Error: the arguments are not a JSON object: {call.call.arguments[:200]!r}. Call it again."
        elif turn.search_room and call.call.name == search.NAME:
            content, ok = search.run(turn.catalogue, turn.found, turn.search_room, call.arguments.get("query")), True
        elif call.call.name in turn.catalogue.hidden:
            content = "Error: not run: this chat turned that tool's server off (/mcp). Do without it."
        else:
            try:
                result = await self.tools.call(call.call.name, call.arguments, turn.chat_id)
            except ToolError as exc:
                content = f"Error: {exc}"
            else:
                ok = not result.is_error
                content = result.text() if ok else f"Error: {result.text()}"
                media = tuple(part for part in result.parts if isinstance(part, BinaryPart) and part.data)
        results[index] = content
        seconds = round(time.perf_counter() - started, 3)
        finished.append(ToolFinished(call.call.id, call.server, call.tool, ok, seconds, media))


def _holds(window: list[StoredMessage], user: StoredMessage) -> bool:
    """Whether the user's message made it into the window: the newest message, or (resumed) the one by its id."""
    if user.id is not None:
        return any(message.id == user.id for message in window)
    return bool(window) and window[-1].role == "user"


def _text_message(role: Literal["user", "assistant"], text: str) -> StoredMessage:
    """A message that is only text, with its token cost."""
    return StoredMessage(
        role=role, content=text, tool_calls=None, tool_call_id=None, token_count=count_message_tokens(role, text, None)
    )


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
