"""A real OpenAI-compatible chat-completions server that tests script (Starlette + uvicorn on 127.0.0.1).

It runs in a thread of its own, so that async tests, blocking subprocess tests and benchmarks can all talk to it
over HTTP; it records every chat request body. Imports nothing from the host.

    with ScriptedModelServer() as server:
        server.script(Reply(tool_calls=(Call("files_read", {"path": "a.txt"}),)),
                      lambda body: Reply(text=f"It says {tool_results(body)[-1]}"))
        ...  # point the client at server.base_url
        assert server.bodies[1]["messages"][-1]["role"] == "tool"
"""

import asyncio
import contextlib
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.peers.threaded_server import ThreadedServer

ToolCallStyle = Literal["first", "repeat", "no_index"]
"""How streamed tool-call chunks look: "first" (OpenAI: id and name only in the first piece of each call),
"repeat" (id and name again in every piece) or "no_index" (like "repeat", without the `index` field)."""


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call the scripted model makes; a str `arguments` is sent as is (it may be broken JSON)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # None: the server makes one up ("call_1", "call_2", ...)


@dataclass(frozen=True, slots=True)
class Reply:
    """One model turn. Streamed as `chunks` pieces of reasoning, of text and of each call's arguments."""

    text: str = ""
    reasoning: str = ""
    reasoning_field: Literal["reasoning", "reasoning_content"] = "reasoning"
    tool_calls: tuple[Call, ...] = ()
    style: ToolCallStyle = "first"
    chunks: int = 3
    finish_reason: str | None = None  # None: "tool_calls" when there are calls, else "stop"
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens); None: a rough count
    hang_after: bool = False  # streamed: send everything but the end, then stall until the server stops
    delay: float = 0.0  # seconds before the answer starts (a slow model); cut short when the server stops
    drip: float = 0.0  # streamed: seconds between chunks (a model that dribbles); cut short when the server stops
    raw: str | None = None  # streamed: this text is the whole body instead of the reply's chunks (broken framing)
    stream_error: str | None = None  # streamed: after the chunks, an `{"error": ...}` event with this message
    break_after: bool = False  # streamed: after the chunks, the connection is dropped mid-response


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer `times` requests (None: all from now on) with an HTTP error status."""

    status: int
    times: int | None = 1
    retry_after: str | None = None
    message: str = "scripted failure"


@dataclass(frozen=True, slots=True)
class Hang:
    """Never answer `times` requests (None: all from now on); they are let go when the server stops."""

    times: int | None = 1


Outcome = Reply | Fail | Hang
Script = Outcome | Callable[[dict[str, Any]], Outcome]
"""A scripted step: an outcome, or a function of the request body that returns one (used once)."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """A chat-completions request as the server received it."""

    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


def last_user_text(body: dict[str, Any]) -> str:
    """The newest user message of a request."""
    return str(next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user"))


def tool_results(body: dict[str, Any]) -> list[str]:
    """The contents of the tool messages that follow the last assistant message of a request."""
    results: list[str] = []
    for message in body.get("messages", []):
        if message.get("role") == "assistant":
            results = []
        elif message.get("role") == "tool":
            content = message.get("content")
            results.append(content if isinstance(content, str) else json.dumps(content))
    return results


def _pieces(text: str, count: int) -> list[str]:
    """`text` cut into at most `count` non-empty pieces of about equal length."""
    if not text:
        return []
    count = max(1, min(count, len(text)))
    size = -(-len(text) // count)
    return [text[start : start + size] for start in range(0, len(text), size)]


class ScriptedModelServer:
    """The server; use it as a context manager (start on enter, stop on exit), one per test."""

    def __init__(self, *, model: str = "scripted-model", models_endpoint: bool = True) -> None:
        self.model = model
        self.models_endpoint = models_endpoint
        self.requests: list[Recorded] = []
        self.listings = 0  # GET /models requests received
        self.record = True
        self._queue: deque[list[Any]] = deque()  # [script, remaining uses or None]
        self._default: Script | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._http: ThreadedServer | None = None
        self._release = asyncio.Event()  # set when the server stops: hanging and delayed answers end

    # -- scripting -------------------------------------------------------------------------------------------
    def script(self, *steps: Script) -> None:
        """Queue outcomes, consumed one request at a time (a Fail or Hang once per `times`)."""
        with self._lock:
            for step in steps:
                uses = step.times if isinstance(step, Fail | Hang) else 1
                self._queue.append([step, uses])

    def always(self, step: Script | None) -> None:
        """What every request gets once the queue is empty (None: an HTTP 400 saying the script ran out)."""
        with self._lock:
            self._default = step

    def instant(self, text: str = "ok") -> None:
        """Benchmark mode: every request gets `text` in one chunk at once, and nothing is recorded."""
        self.record = False
        self.always(Reply(text=text, chunks=1, usage=(1, 1)))

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The request bodies received so far, in order."""
        return [recorded.body for recorded in self.requests]

    @property
    def pending(self) -> int:
        """Scripted steps not used up yet."""
        with self._lock:
            return len(self._queue)

    @property
    def port(self) -> int:
        assert self._http is not None, "the server is not started"
        return self._http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _next(self, body: dict[str, Any]) -> Outcome:
        with self._lock:
            if self._queue:
                entry = self._queue[0]
                step = entry[0]
                if entry[1] is not None:
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self._queue.popleft()
            else:
                step = self._default
        if step is None:
            return Fail(400, message=f"scripted server: no reply left for request {len(self.requests)}")
        return step(body) if callable(step) else step

    # -- life cycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> "ScriptedModelServer":
        self._http = ThreadedServer("scripted model server", backlog=128)
        self._http.start(self._app())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._http is not None:
            self._http.call_soon(self._release.set)
            self._http.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        assert self._http is not None
        self._http.ready.set()
        yield

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    # -- HTTP ------------------------------------------------------------------------------------------------
    async def _models(self, _request: Request) -> Response:
        self.listings += 1
        if not self.models_endpoint:
            return JSONResponse({"error": {"message": "not found", "type": "not_found"}}, status_code=404)
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "scripted"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        if self.record:
            self.requests.append(Recorded(body, dict(request.headers), time.monotonic()))
        outcome = self._next(body)
        if isinstance(outcome, Hang):
            await self._stalled()
            return JSONResponse({"error": {"message": "server stopped"}}, status_code=503)
        if isinstance(outcome, Fail):
            headers = {"Retry-After": outcome.retry_after} if outcome.retry_after is not None else None
            error = {"error": {"message": outcome.message, "type": "scripted", "code": outcome.status}}
            return JSONResponse(error, status_code=outcome.status, headers=headers)
        if outcome.delay:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), outcome.delay)
        usage = self._usage(body, outcome)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._stream(outcome, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream")
        return JSONResponse(self._whole(outcome, usage))

    async def _stalled(self) -> None:
        await self._release.wait()

    def _call_ids(self, reply: Reply) -> list[str]:
        return [call.id or f"call_{next(self._ids)}" for call in reply.tool_calls]

    @staticmethod
    def _arguments(call: Call) -> str:
        return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)

    @staticmethod
    def _finish(reply: Reply) -> str:
        return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
        if reply.usage is not None:
            prompt, completion = reply.usage
        else:
            prompt = max(1, len(json.dumps(body.get("messages", []))) // 4)
            produced = reply.reasoning + reply.text + "".join(self._arguments(call) for call in reply.tool_calls)
            completion = max(1, len(produced) // 4)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _whole(self, reply: Reply, usage: dict[str, int]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
        if reply.reasoning:
            message[reply.reasoning_field] = reply.reasoning
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": self._arguments(call)}}
                for call_id, call in zip(self._call_ids(reply), reply.tool_calls, strict=True)
            ]
        choice = {"index": 0, "message": message, "finish_reason": self._finish(reply)}
        return {**self._envelope("chat.completion"), "choices": [choice], "usage": usage}

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": "chatcmpl-scripted", "object": kind, "created": int(time.time()), "model": self.model}

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return f"data: {json.dumps({**self._envelope('chat.completion.chunk'), 'choices': [choice]})}\n\n"

    def _chunks(self, reply: Reply) -> Iterator[str]:
        """Every chunk of a streamed reply but the last (the one with finish_reason)."""
        yield self._chunk({"role": "assistant", "content": ""})
        for piece in _pieces(reply.reasoning, reply.chunks):
            yield self._chunk({reply.reasoning_field: piece, "content": None})
        for piece in _pieces(reply.text, reply.chunks):
            yield self._chunk({"content": piece})
        for index, (call_id, call) in enumerate(zip(self._call_ids(reply), reply.tool_calls, strict=True)):
            whole = {"id": call_id, "type": "function"}
            pieces = _pieces(self._arguments(call), reply.chunks) or [""]
            if reply.style == "first":
                first = {"index": index, **whole, "function": {"name": call.name, "arguments": ""}}
                yield self._chunk({"tool_calls": [first]})
                for piece in pieces:
                    yield self._chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            else:
                for piece in pieces:
                    part = {**whole, "function": {"name": call.name, "arguments": piece}}
                    if reply.style == "repeat":
                        part["index"] = index
                    yield self._chunk({"tool_calls": [part]})

    async def _stream(self, reply: Reply, usage: dict[str, int] | None) -> AsyncIterator[str]:
        if reply.raw is not None:
            yield reply.raw
            return
        for chunk in self._chunks(reply):
            yield chunk
            if reply.drip:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._release.wait(), reply.drip)
            else:
                await asyncio.sleep(0)  # let each chunk go out on its own
        if reply.hang_after:
            await self._stalled()
            return
        if reply.stream_error is not None:
            yield f"data: {json.dumps({'error': {'message': reply.stream_error, 'type': 'scripted'}})}\n\n"
            return
        if reply.break_after:
            raise ConnectionAbortedError("scripted: the connection drops mid-answer")
        yield self._chunk({}, self._finish(reply))
        if usage is not None:
            yield f"data: {json.dumps({**self._envelope('chat.completion.chunk'), 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"
