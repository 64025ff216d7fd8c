"""The one model client for any OpenAI-compatible chat-completions server (Ollama, Ollama Cloud, vLLM), on openai.

Owns streaming, tool-call assembly, reasoning fields, timeouts, size limits and retries; the SDK's errors become
ModelUnavailable here and nowhere else. The response body is read here too (server-sent events included), so that
LLM_TIMEOUT bounds a whole call and LLM_MAX_RESPONSE_BYTES what one answer may hold in memory.
Imports only host.errors from the host: never host.mcp, host.storage or host.telegram.
"""

import email.utils
import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import httpx2
import openai
import structlog
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from host.errors import ModelUnavailable

log = structlog.get_logger("host.engine")

BACKOFF_FIRST = 0.5
"""Seconds before the second attempt; each further attempt waits twice as long."""
RETRY_AFTER_CAP = 30.0
"""A server's Retry-After is honoured up to this many seconds."""
HEALTH_TIMEOUT = 10.0
_PLACEHOLDER_KEY = "none"  # the SDK insists on some key; Ollama ignores it


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the raw JSON text the model produced ("" is given as "{}")


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None
    finish_reason: str | None
    cut_at: int | None = None  # set: the answer passed max_response_bytes here and the rest was not read


ModelEvent = TextDelta | ReasoningDelta | Completion


@dataclass(frozen=True, slots=True)
class ModelSettings:
    base_url: str
    api_key: str
    model: str
    temperature: float = 0.7
    max_tokens: int = 2048
    timeout: float = 120.0
    retry_attempts: int = 3
    stream_tool_turns: bool = True
    max_concurrent_calls: int = 10  # requests in flight to the model server at once; more wait their turn
    max_response_bytes: int = 2 * 1024 * 1024  # text, reasoning and tool arguments of one answer, in UTF-8


class ChatModel:
    """A client for one model on one server; an async context manager that owns its HTTP connections.

    Consume `complete()` to the end, or close it (`contextlib.aclosing`), so that its connection is released.
    """

    def __init__(
        self,
        settings: ModelSettings,
        *,
        backoff_first: float = BACKOFF_FIRST,
        retry_after_cap: float = RETRY_AFTER_CAP,
    ) -> None:
        self.settings = settings
        self._backoff_first = backoff_first
        self._retry_after_cap = retry_after_cap
        self._client = openai.AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key or _PLACEHOLDER_KEY,
            timeout=settings.timeout,
            max_retries=0,
        )
        self._slots = anyio.Semaphore(settings.max_concurrent_calls)

    async def __aenter__(self) -> "ChatModel":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._client.close()

    async def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionToolParam] | None = None,
        *,
        tool_choice: Literal["auto", "none"] | None = None,
    ) -> AsyncGenerator[ModelEvent, None]:
        """Stream one model turn: TextDelta/ReasoningDelta as they come, then exactly one Completion last.

        Streams unless tools are offered and settings.stream_tool_turns is False; a non-streamed turn yields its
        whole reasoning (if any) as one ReasoningDelta and its whole text as one TextDelta before the Completion.
        A streamed turn whose tool-call arguments are not a JSON object is asked again once without streaming; from
        the repeat only text not yet shown is yielded, and its Completion is the turn's. Failures are retried while
        the failed attempt has yielded nothing (see `_attempts`); ModelUnavailable is raised when they run out.
        At most settings.max_concurrent_calls turns talk to the server at once; the others wait here.
        """
        async with self._slots, aclosing(self._complete(messages, tools, tool_choice)) as events:
            async for event in events:
                yield event

    async def _complete(
        self,
        messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionToolParam] | None,
        tool_choice: Literal["auto", "none"] | None,
    ) -> AsyncGenerator[ModelEvent, None]:
        request = _Request(messages, tools or None, tool_choice)
        if tools and not self.settings.stream_tool_turns:
            async with aclosing(self._attempts(lambda deadline: self._whole(request, deadline))) as events:
                async for event in events:
                    yield event
            return
        shown: list[str] = []
        turn: Completion | None = None
        async with aclosing(self._attempts(lambda deadline: self._streamed(request, deadline))) as events:
            async for event in events:
                if isinstance(event, Completion):
                    turn = event
                    continue
                if isinstance(event, TextDelta):
                    shown.append(event.text)
                yield event
        if turn is None:  # _attempts always ends with a Completion or raises
            raise ModelUnavailable("The model server ended its answer without finishing it")
        if turn.cut_at is None and any(not _is_json_object(call.arguments) for call in turn.tool_calls):
            log.warning("llm_tool_arguments_malformed", action="repeating the turn without streaming")
            already = "".join(shown)
            async with aclosing(self._attempts(lambda deadline: self._whole(request, deadline))) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        rest = event.text[len(already) :] if event.text.startswith(already) else ""
                        if rest:
                            yield TextDelta(rest)
                    elif isinstance(event, Completion):
                        turn = event
        yield turn

    async def healthy(self, *, generate: bool = True) -> bool:
        """Whether the model answers: GET /models lists it, or else a 1-token completion works. Never raises.

        With `generate=False` nothing is generated (for probes anyone may send): a server that answers GET
        /models at all, listing the model or not, or saying it has no such route, counts as answering."""
        with anyio.move_on_after(HEALTH_TIMEOUT):
            try:
                page = await self._client.models.list(timeout=HEALTH_TIMEOUT)
                if not generate or any(model.id == self.settings.model for model in page.data):
                    return True
            except openai.APIStatusError as exc:
                if exc.status_code not in (404, 405, 501):
                    log.info("llm_health_failed", status=exc.status_code)
                    return False
            except Exception as exc:
                log.info("llm_health_failed", error=type(exc).__name__)
                return False
            if not generate:
                return True
            try:  # no /models, or the model is served under another name there
                await self._client.chat.completions.create(
                    model=self.settings.model,
                    messages=[{"role": "user", "content": "ping"}],
                    max_tokens=1,
                    stream=False,
                    timeout=HEALTH_TIMEOUT,
                )
            except Exception as exc:
                log.info("llm_health_failed", error=type(exc).__name__, status=getattr(exc, "status_code", None))
                return False
            return True
        log.info("llm_health_failed", error="timeout")
        return False

    # -- attempts --------------------------------------------------------------------------------------------
    async def _attempts(self, attempt: Callable[[float], AsyncGenerator[ModelEvent]]) -> AsyncGenerator[ModelEvent]:
        """Run `attempt` up to retry_attempts times in all, each given the deadline (settings.timeout from its
        start) by which it must have sent its request and read the whole answer: 429, 5xx, timeouts and
        connection errors are tried again (after Retry-After, capped, or an exponential backoff), but only while
        the failed attempt yielded nothing; any other failure, or one after a delta, raises ModelUnavailable."""
        attempts = max(1, self.settings.retry_attempts)
        for number in range(1, attempts + 1):
            yielded = False
            try:
                async with aclosing(attempt(anyio.current_time() + self.settings.timeout)) as events:
                    async for event in events:
                        yielded = yielded or not isinstance(event, Completion)
                        yield event
                return
            except (openai.OpenAIError, httpx2.HTTPError, TimeoutError, ValueError, _Malformed, _TooLarge) as exc:
                failure = _classify(exc)
            again = failure.retryable and not yielded and number < attempts
            delay = self._delay(failure, number) if again else None
            log.warning(
                "llm_attempt_failed",
                attempt=number,
                attempts=attempts,
                status=failure.status,
                error=failure.kind,
                retry_in=None if delay is None else round(delay, 2),
            )
            if delay is None:
                raise ModelUnavailable(self._message(failure, number, midway=yielded)) from None
            await anyio.sleep(delay)

    def _delay(self, failure: "_Failure", number: int) -> float:
        if failure.retry_after is not None:
            return min(self._retry_after_cap, failure.retry_after)
        return float(self._backoff_first * 2 ** (number - 1))

    def _message(self, failure: "_Failure", attempts: int, *, midway: bool) -> str:
        tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
        if midway and failure.kind == "timeout":
            return f"The model server did not finish its answer within {self.settings.timeout:g} s"
        if midway:
            reason = f"HTTP {failure.status}" if failure.status else failure.kind
            return f"The model server broke off its answer ({reason})"
        if failure.kind == "timeout":
            return f"The model server did not answer within {self.settings.timeout:g} s ({tries})"
        if failure.kind == "connection":
            return f"The model server at {_safe_url(self.settings.base_url)} could not be reached ({tries})"
        if failure.kind == "malformed":
            return "The model server sent a response that could not be read"
        if failure.kind == "too_large":
            return f"The model server sent an answer over {self.settings.max_response_bytes} bytes"
        if failure.status == 429:
            return f"The model server is overloaded (HTTP 429 after {tries})"
        if failure.status in (401, 403):
            return f"The model server refused the API key (HTTP {failure.status})"
        if failure.status == 404:
            return f"The model server does not serve model {self.settings.model!r} (HTTP 404)"
        if failure.retryable:
            return f"The model server did not answer (HTTP {failure.status} after {tries})"
        detail = self._redact(failure.detail)
        status = f"HTTP {failure.status}: " if failure.status else ""
        return f"The model server rejected the request ({status}{detail})"

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return text.replace(key, "***") if len(key) >= 4 else text

    # -- one request -----------------------------------------------------------------------------------------
    def _body(self, request: "_Request", *, stream: bool) -> dict[str, Any]:
        """The request body. Sent through the client's plain `post`: `chat.completions.create` walks every
        message through its TypedDict transform, which cost about 20 ms a request on a 50-message history."""
        body: dict[str, Any] = {
            "model": self.settings.model,
            "messages": request.messages,
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
            "stream": stream,
        }
        if request.tools:
            body["tools"] = request.tools
        if request.tool_choice:
            body["tool_choice"] = request.tool_choice
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    async def _open(self, request: "_Request", deadline: float, *, stream: bool) -> httpx2.Response:
        """Send the request; the response's body is left to read (and the response to close)."""
        with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
            return await self._client.post(
                "/chat/completions", body=self._body(request, stream=stream), cast_to=httpx2.Response, stream=True
            )

    async def _streamed(self, request: "_Request", deadline: float) -> AsyncGenerator[ModelEvent]:
        cap = self.settings.max_response_bytes
        response = await self._open(request, deadline, stream=True)
        turn = _TurnBuilder()
        try:
            async for data in _events(response, deadline, line_cap=cap + _ENVELOPE_BYTES):
                if data is not None:
                    chunk = _json(json.loads(data))
                    if isinstance(chunk, dict) and chunk.get("error"):
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else None
                        reason = str(message or "the stream reported an error")
                        raise openai.APIError(reason, response.request, body=error)
                    for event in turn.add(chunk):
                        yield event
                if data is None or turn.size > cap:  # the rest is not read: memory stays bounded
                    turn.cut_at = turn.size
                    log.warning("llm_answer_cut", bytes=turn.size, limit=cap)
                    break
        finally:
            await response.aclose()
        yield turn.completion()

    async def _whole(self, request: "_Request", deadline: float) -> AsyncGenerator[ModelEvent]:
        response = await self._open(request, deadline, stream=False)
        limit = 2 * self.settings.max_response_bytes + _ENVELOPE_BYTES  # JSON escapes may double the text
        try:
            body = bytearray()
            async for piece in _timed(response.aiter_bytes(), deadline):
                body += piece
                if len(body) > limit:
                    raise _TooLarge
        finally:
            await response.aclose()
        completion = _from_response(_json(json.loads(body)))
        if completion.reasoning:
            yield ReasoningDelta(completion.reasoning)
        if completion.text:
            yield TextDelta(completion.text)
        yield completion


_ENVELOPE_BYTES = 64 * 1024
"""Room for the JSON around the content in one event or response."""


async def _timed(chunks: AsyncIterator[bytes], deadline: float) -> AsyncIterator[bytes]:
    """The body's pieces as they come; TimeoutError once the deadline passes (never waits across a yield)."""
    iterator = aiter(chunks)
    while True:
        with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
            try:
                piece = await anext(iterator)
            except StopAsyncIteration:
                return
        yield piece


async def _events(response: httpx2.Response, deadline: float, *, line_cap: int) -> AsyncIterator[str | None]:
    """The data of each server-sent event up to `[DONE]`; None (and nothing more) for a line or an event (its data
    lines together) over `line_cap`."""
    buffer = bytearray()
    data: list[bytes] = []
    size = 0  # of `data`
    async for piece in _timed(response.aiter_bytes(), deadline):
        buffer += piece
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = bytes(buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if line.startswith(b"data:"):
                data.append(line[6:] if line.startswith(b"data: ") else line[5:])
                size += len(data[-1]) + 1
                if size > line_cap:
                    yield None
                    return
            elif not line and data:
                event = b"\n".join(data).decode(errors="replace")
                data, size = [], 0
                if event.startswith("[DONE]"):
                    return
                yield event
        del buffer[:start]
        if len(buffer) > line_cap:
            yield None
            return
    if data and not data[0].startswith(b"[DONE]"):
        yield b"\n".join(data).decode(errors="replace")


@dataclass(frozen=True, slots=True)
class _Request:
    messages: list[ChatCompletionMessageParam]
    tools: list[ChatCompletionToolParam] | None
    tool_choice: Literal["auto", "none"] | None


class _Malformed(Exception):
    """A response that parses but cannot be used."""


class _TooLarge(Exception):
    """A whole (not streamed) response over the size limit."""


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failed attempt, classified: whether to try again, and what to tell the user and the log."""

    retryable: bool
    kind: str  # "http", "timeout", "connection", "stream_error", "malformed"
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


def _classify(exc: Exception) -> _Failure:
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException):
        return _Failure(retryable=True, kind="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        return _Failure(retryable=True, kind="connection")
    if isinstance(exc, _TooLarge):
        return _Failure(retryable=False, kind="too_large")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 429) or status >= 500
        return _Failure(retryable, "http", status, _retry_after(exc.response.headers), _short(exc.message))
    if isinstance(exc, openai.APIResponseValidationError | ValueError | _Malformed):
        return _Failure(retryable=False, kind="malformed")
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return _Failure(retryable=True, kind="stream_error", detail=_short(exc.message))
    return _Failure(retryable=False, kind=type(exc).__name__, detail=_short(str(exc)))


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None when absent or unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _safe_url(url: str) -> str:
    """The URL without credentials or query, fit to show."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _arguments(text: str) -> str:
    return text if text.strip() else "{}"


def _reasoning(part: Any) -> str:
    """gpt-oss reasoning from a delta or message: `reasoning` (Ollama, newer vLLM) or `reasoning_content`."""
    extra = getattr(part, "model_extra", None) or {}
    for name in ("reasoning", "reasoning_content"):
        value = extra.get(name, getattr(part, name, None))
        if isinstance(value, str) and value:
            return value
    return ""


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


def _new_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


class _PartialCall:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class _Json(dict[str, Any]):
    """A streamed chunk's JSON object whose fields read as attributes (None when absent), as the SDK's models do.
    Building the SDK's ChatCompletionChunk for every chunk cost about 0.12 ms: 38 ms of CPU for a 300-chunk
    answer, more than the rest of the turn; this costs a few microseconds."""

    def __getattr__(self, name: str) -> Any:
        return self.get(name)


def _json(value: Any) -> Any:
    if isinstance(value, dict):
        return _Json((key, _json(item)) for key, item in value.items())
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value


class _TurnBuilder:
    """Assembles one streamed turn from its chunks (choice 0 only), whichever way a server shapes tool calls."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[_PartialCall] = []
        self.by_index: dict[int, _PartialCall] = {}
        self.by_id: dict[str, _PartialCall] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.size = 0  # bytes of text, reasoning, names and arguments so far (UTF-8, as sent)
        self.cut_at: int | None = None

    def add(self, chunk: Any) -> list[TextDelta | ReasoningDelta]:
        events: list[TextDelta | ReasoningDelta] = []
        usage = _usage(getattr(chunk, "usage", None))
        if usage is not None:
            self.usage = usage
        for choice in getattr(chunk, "choices", None) or []:
            if (getattr(choice, "index", 0) or 0) != 0:
                continue
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
            delta = getattr(choice, "delta", None)
            if delta is None:
                continue
            reasoning = _reasoning(delta)
            if reasoning:
                self.size += len(reasoning.encode())
                self.reasoning.append(reasoning)
                events.append(ReasoningDelta(reasoning))
            if delta.content:
                self.size += len(delta.content.encode())
                self.text.append(delta.content)
                events.append(TextDelta(delta.content))
            for piece in delta.tool_calls or []:
                self._add_call(piece)
        return events

    def _add_call(self, piece: Any) -> None:
        """Name is set (some servers repeat it in every piece), arguments are appended. A piece without `index`
        belongs to the call with its id, starts a new call when its id is new, and else continues the last call."""
        index: int | None = getattr(piece, "index", None)
        call_id: str = getattr(piece, "id", None) or ""
        call: _PartialCall | None = None
        if index is not None:
            call = self.by_index.get(index)
            if call is not None and call_id and call.id and call.id != call_id:
                call = None  # a server that numbers every call 0
        elif call_id:
            call = self.by_id.get(call_id)
        elif self.calls:
            call = self.calls[-1]
        if call is None:
            call = _PartialCall()
            self.calls.append(call)
            if index is not None:
                self.by_index[index] = call
        if call_id:
            call.id = call_id
            self.by_id[call_id] = call
        self.size += len(call_id)
        function = getattr(piece, "function", None)
        if function is not None:
            if function.name:
                call.name = str(function.name)
                self.size += len(call.name)
            if function.arguments:
                call.arguments.append(str(function.arguments))
                self.size += len(call.arguments[-1].encode())

    def completion(self) -> Completion:
        calls = tuple(ToolCall(c.id or _new_id(), c.name, _arguments("".join(c.arguments))) for c in self.calls)
        finish = "length" if self.cut_at is not None else self.finish_reason
        return Completion("".join(self.text), "".join(self.reasoning), calls, self.usage, finish, self.cut_at)


def _from_response(response: Any) -> Completion:
    choices = getattr(response, "choices", None) or []
    if not choices:
        raise _Malformed("the response has no choices")
    choice = choices[0]
    message = choice.message
    calls = []
    for call in message.tool_calls or []:
        function = getattr(call, "function", None)
        if function is None:  # a custom (non-function) tool call: not something we offered
            continue
        calls.append(ToolCall(call.id or _new_id(), function.name or "", _arguments(function.arguments or "")))
    return Completion(
        message.content or "",
        _reasoning(message),
        tuple(calls),
        _usage(getattr(response, "usage", None)),
        choice.finish_reason,
    )
