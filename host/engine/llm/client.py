"""ChatModel: calls to one model on an OpenAI-compatible server, through openai's client.

Owns streaming or whole answers, retries with backoff, timeouts and the concurrency cap; the SDK's errors become
ModelUnavailable here and nowhere else. The response body is read here too (through `wire`), so that LLM_TIMEOUT
bounds a whole call and LLM_MAX_RESPONSE_BYTES what one answer may hold in memory.
"""

import json
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import anyio
import httpx2
import openai
import structlog
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from host import metrics
from host.backoff import backoff
from host.engine.llm.failures import Failure, Malformed, TooLarge, classify
from host.engine.llm.values import Completion, ModelEvent, ModelSettings, ReasoningDelta, TextDelta
from host.engine.llm.wire import (
    ENVELOPE_BYTES,
    TurnBuilder,
    from_response,
    is_json_object,
    json_object,
    sse_events,
    timed,
)
from host.errors import ModelUnavailable
from host.redact import mask, public_url

log = structlog.get_logger("host.engine")

BACKOFF_FIRST = 0.5
"""Seconds before the second attempt; each further attempt waits twice as long."""
RETRY_AFTER_CAP = 30.0
"""A server's Retry-After is honoured up to this many seconds."""
HEALTH_TIMEOUT = 10.0
_PLACEHOLDER_KEY = "none"  # the SDK insists on some key; Ollama ignores it


@dataclass(frozen=True, slots=True)
class _Request:
    messages: list[ChatCompletionMessageParam]
    tools: list[ChatCompletionToolParam] | None
    tool_choice: Literal["auto", "none"] | None
    model: str  # this call's model and temperature: the settings', or a chat's own choice
    temperature: float


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
        model: str | None = None,
        temperature: float | None = None,
    ) -> AsyncGenerator[ModelEvent, None]:
        """Stream one model turn: TextDelta/ReasoningDelta as they come, then exactly one Completion last.

        Streams unless tools are offered and settings.stream_tool_turns is False; a non-streamed turn yields its
        whole reasoning (if any) as one ReasoningDelta and its whole text as one TextDelta before the Completion.
        A streamed turn whose tool-call arguments are not a JSON object is asked again once without streaming; from
        the repeat only text not yet shown is yielded, and its Completion is the turn's. Failures are retried while
        the failed attempt has yielded nothing (see `_attempts`); ModelUnavailable is raised when they run out.
        At most settings.max_concurrent_calls turns talk to the server at once; the others wait here. `model` and
        `temperature` override the settings' for this call only (a chat's own choice, on the same server).
        """
        request = _Request(
            messages,
            tools or None,
            tool_choice,
            model or self.settings.model,
            self.settings.temperature if temperature is None else temperature,
        )
        async with self._slots, aclosing(self._complete(request)) as events:
            async for event in events:
                yield event

    async def _complete(self, request: _Request) -> AsyncGenerator[ModelEvent, None]:
        if request.tools and not self.settings.stream_tool_turns:
            async with aclosing(
                self._attempts(request.model, lambda deadline: self._whole(request, deadline))
            ) as events:
                async for event in events:
                    yield event
            return
        shown: list[str] = []
        turn: Completion | None = None
        async with aclosing(
            self._attempts(request.model, lambda deadline: self._streamed(request, deadline))
        ) as events:
            async for event in events:
                if isinstance(event, Completion):
                    turn = event
                    continue
                if isinstance(event, TextDelta):
                    shown.append(event.text)
                yield event
        if turn is None:  # _attempts always ends with a Completion or raises
            raise ModelUnavailable("The model server ended its answer without finishing it")
        if turn.cut_at is None and any(not is_json_object(call.arguments) for call in turn.tool_calls):
            log.warning("llm_tool_arguments_malformed", action="repeating the turn without streaming")
            already = "".join(shown)
            async with aclosing(
                self._attempts(request.model, lambda deadline: self._whole(request, deadline))
            ) as events:
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
    async def _attempts(
        self, model: str, attempt: Callable[[float], AsyncGenerator[ModelEvent]]
    ) -> AsyncGenerator[ModelEvent]:
        """Run `attempt` up to retry_attempts times in all, each given the deadline (settings.timeout from its
        start) by which it must have sent its request and read the whole answer: 429, 5xx, timeouts and
        connection errors are tried again (after Retry-After, capped, or an exponential backoff), but only while
        the failed attempt yielded nothing; any other failure, or one after a delta, raises ModelUnavailable."""
        attempts = max(1, self.settings.retry_attempts)
        for number in range(1, attempts + 1):
            yielded = False
            started = time.perf_counter()
            try:
                async with aclosing(attempt(anyio.current_time() + self.settings.timeout)) as events:
                    async for event in events:
                        yielded = yielded or not isinstance(event, Completion)
                        if isinstance(event, Completion):
                            self._measured(model, "ok", started, event)
                        yield event
                return
            except (openai.OpenAIError, httpx2.HTTPError, TimeoutError, ValueError, Malformed, TooLarge) as exc:
                failure = classify(exc)
            self._measured(model, _status(failure), started)
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
                raise ModelUnavailable(self._message(failure, number, model, midway=yielded)) from None
            await anyio.sleep(delay)

    def _measured(self, model: str, status: str, started: float, completion: Completion | None = None) -> None:
        """One request in llm_request_duration_seconds; the tokens of an answer in llm_tokens_total."""
        metrics.llm_request(model, status, time.perf_counter() - started)
        if completion is not None and completion.usage is not None:
            usage = completion.usage
            metrics.llm_tokens(model, prompt=usage.prompt_tokens, completion=usage.completion_tokens)

    def _delay(self, failure: Failure, number: int) -> float:
        if failure.retry_after is not None:
            return min(self._retry_after_cap, failure.retry_after)
        return backoff(number, self._backoff_first)

    def _message(self, failure: Failure, attempts: int, model: str, *, midway: bool) -> str:
        tries = f"{attempts} attempt" + ("" if attempts == 1 else "s")
        if midway and failure.kind == "timeout":
            return f"The model server did not finish its answer within {self.settings.timeout:g} s"
        if midway:
            reason = f"HTTP {failure.status}" if failure.status else failure.kind
            return f"The model server broke off its answer ({reason})"
        if failure.kind == "timeout":
            return f"The model server did not answer within {self.settings.timeout:g} s ({tries})"
        if failure.kind == "connection":
            return f"The model server at {public_url(self.settings.base_url)} could not be reached ({tries})"
        if failure.kind == "malformed":
            return "The model server sent a response that could not be read"
        if failure.kind == "too_large":
            return f"The model server sent an answer over {self.settings.max_response_bytes} bytes"
        if failure.status == 429:
            return f"The model server is overloaded (HTTP 429 after {tries})"
        if failure.status in (401, 403):
            return f"The model server refused the API key (HTTP {failure.status})"
        if failure.status == 404:
            return f"The model server does not serve model {model!r} (HTTP 404)"
        if failure.retryable:
            return f"The model server did not answer (HTTP {failure.status} after {tries})"
        detail = self._redact(failure.detail)
        status = f"HTTP {failure.status}: " if failure.status else ""
        return f"The model server rejected the request ({status}{detail})"

    def _redact(self, text: str) -> str:
        key = self.settings.api_key
        return mask(text, [key]) if len(key) >= 4 else text

    # -- one request -----------------------------------------------------------------------------------------
    def _body(self, request: _Request, *, stream: bool) -> dict[str, Any]:
        """The request body. Sent through the client's plain `post`: `chat.completions.create` walks every
        message through its TypedDict transform, which cost about 20 ms a request on a 50-message history."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "temperature": request.temperature,
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

    async def _open(self, request: _Request, deadline: float, *, stream: bool) -> httpx2.Response:
        """Send the request; the response's body is left to read (and the response to close)."""
        with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
            return await self._client.post(
                "/chat/completions", body=self._body(request, stream=stream), cast_to=httpx2.Response, stream=True
            )

    async def _streamed(self, request: _Request, deadline: float) -> AsyncGenerator[ModelEvent]:
        cap = self.settings.max_response_bytes
        response = await self._open(request, deadline, stream=True)
        turn = TurnBuilder()
        try:
            async for data in sse_events(response, deadline, line_cap=cap + ENVELOPE_BYTES):
                if data is not None:
                    chunk = json_object(json.loads(data))
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

    async def _whole(self, request: _Request, deadline: float) -> AsyncGenerator[ModelEvent]:
        response = await self._open(request, deadline, stream=False)
        limit = 2 * self.settings.max_response_bytes + ENVELOPE_BYTES  # JSON escapes may double the text
        try:
            body = bytearray()
            async for piece in timed(response.aiter_bytes(), deadline):
                body += piece
                if len(body) > limit:
                    raise TooLarge
        finally:
            await response.aclose()
        completion = from_response(json_object(json.loads(body)))
        if completion.reasoning:
            yield ReasoningDelta(completion.reasoning)
        if completion.text:
            yield TextDelta(completion.text)
        yield completion


_KINDS = frozenset({"timeout", "connection", "stream_error", "malformed", "too_large"})


def _status(failure: Failure) -> str:
    """A failed request's llm_request_duration_seconds status: http_4xx/http_5xx, a known kind, or "error"."""
    if failure.status:
        return f"http_{failure.status // 100}xx"
    return failure.kind if failure.kind in _KINDS else "error"
