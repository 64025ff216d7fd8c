"""The three transports (stdio, SSE, Streamable HTTP) built from a ServerConfig, each watched for its end,
and one-line descriptions of transport failures that never carry secrets.

Imports config and stderr; nothing else from the host.
"""

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import MCPError, StdioServerParameters
from mcp.client._transport import Transport, TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from host.mcp.config import ServerConfig
from host.mcp.stderr import StderrTail

HTTP_READ_TIMEOUT = 300.0  # an SSE stream may stay quiet this long between events
_SECRET_MIN_LENGTH = 6  # shorter values are too common in prose to be worth masking
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL|COOKIE|SESSION", re.IGNORECASE)


def open_transport(config: ServerConfig, stderr: StderrTail | None, ended: anyio.Event) -> Transport:
    """The SDK transport for `config`; `ended` is set when the server's side of it ends."""
    inner: Transport
    if config.transport == "stdio":
        assert config.command is not None and stderr is not None
        params = StdioServerParameters(
            command=config.command, args=list(config.args), env=dict(config.env) or None, cwd=config.cwd
        )
        inner = stdio_client(params, errlog=stderr.writer)
    elif config.transport == "sse":
        assert config.url is not None
        read_timeout = max(HTTP_READ_TIMEOUT, config.timeout + 30)
        inner = sse_client(
            config.url, headers=dict(config.headers), timeout=config.init_timeout, sse_read_timeout=read_timeout
        )
    else:
        assert config.url is not None
        inner = _streamable_http(config)
    return _watched(inner, ended)


@asynccontextmanager
async def _streamable_http(config: ServerConfig) -> AsyncIterator[TransportStreams]:
    """The SDK's Streamable HTTP transport with our headers (it takes them only through its HTTP client)."""
    assert config.url is not None
    timeout = httpx2.Timeout(config.init_timeout, read=max(HTTP_READ_TIMEOUT, config.timeout + 30))
    async with (
        httpx2.AsyncClient(headers=dict(config.headers), timeout=timeout) as http,
        streamable_http_client(config.url, http_client=http) as streams,
    ):
        yield streams


@asynccontextmanager
async def _watched(transport: Transport, ended: anyio.Event) -> AsyncIterator[TransportStreams]:
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, ended), write_stream
    ended.set()


class _WatchedReadStream:
    """A read stream that sets an event when it reaches its end (a stdio child exited, a stream closed)."""

    def __init__(self, inner: Any, ended: anyio.Event) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> "_WatchedReadStream":
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> "_WatchedReadStream":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def describe_failure(exc: BaseException, config: ServerConfig) -> str:
    """One line for a log or a user: the innermost meaningful exception, no traceback, no secrets."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        if config.cwd and exc.filename == config.cwd:
            text = f"working directory not found: {config.cwd}"
        else:
            text = f"command not found: {exc.filename or config.command}"
    elif isinstance(exc, PermissionError):
        text = f"permission denied: {exc.filename or config.command}"
    elif isinstance(exc, MCPError):
        text = exc.message
    elif isinstance(exc, httpx2.HTTPStatusError):
        text = f"HTTP {exc.response.status_code} from {_public_url(str(exc.request.url))}"
    elif isinstance(exc, httpx2.ConnectError):
        text = f"cannot connect to {_public_url(config.url or '')}"
    elif isinstance(exc, httpx2.HTTPError):
        text = f"{type(exc).__name__} talking to {_public_url(config.url or '')}"
    else:
        detail = str(exc).strip()
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return redact(text, config)


def redact(text: str, config: ServerConfig) -> str:
    """`text` with the server's configured secrets masked."""
    for secret in _secrets(config):
        text = text.replace(secret, "***")
    return text


def _secrets(config: ServerConfig) -> Iterable[str]:
    """Every header value, environment values whose names look secret, and the URL's password and query."""
    values = [*config.headers.values(), *(value for name, value in config.env.items() if _SECRET_NAME.search(name))]
    for value in values:
        yield from (part for part in value.split() if len(part) >= _SECRET_MIN_LENGTH)
    if config.url:
        parts = urlsplit(config.url)
        yield from (secret for secret in (parts.password, parts.query) if secret)


def _public_url(url: str) -> str:
    """scheme://host:port/path: no user, password or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
