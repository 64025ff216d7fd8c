"""The three transports (stdio, SSE, Streamable HTTP) built from a ServerConfig, their traffic reported to a
Wire, and one-line descriptions of transport failures that never carry secrets.

Imports config, stderr, stdio and wire; nothing else from the host.
"""

import os
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
from mcp import MCPError
from mcp.client import Transport
from mcp.client.sse import sse_client
from mcp.client.stdio import get_default_environment
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.message import SessionMessage

from host.mcp.config import ServerConfig
from host.mcp.stderr import StderrTail
from host.mcp.stdio import stdio_transport
from host.mcp.wire import Wire
from host.redact import mask, public_url

HTTP_READ_TIMEOUT = 300.0  # an SSE stream may stay quiet this long between events
CLOSE_TIMEOUT = 3.0  # for a transport's goodbye (Streamable HTTP's DELETE), even when the owner is cancelled
_SESSION_HEADER = "mcp-session-id"
_VERSION_HEADER = "mcp-protocol-version"
_SECRET_MIN_LENGTH = 6  # shorter values are too common in prose to be worth masking
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|AUTH|CREDENTIAL|COOKIE|SESSION", re.IGNORECASE)
# What a stdio server gets of the bot's environment besides the SDK's HOME, LOGNAME, PATH, SHELL, TERM and USER:
# the network's proxies and certificates, and the locale. The server's own `env` in mcp_servers.json wins.
INHERITED_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "LANG",
    "LANGUAGE",
    "TZ",
)
INHERITED_PREFIXES = ("LC_",)


def open_transport(config: ServerConfig, stderr: StderrTail | None, wire: Wire) -> Transport:
    """The SDK transport for `config`, reporting its traffic and its end to `wire`."""
    inner: Transport
    if config.transport == "stdio":
        assert config.command is not None and stderr is not None
        env = get_default_environment() | inherited_environment() | dict(config.env)
        inner = stdio_transport(config.command, config.args, env=env, cwd=config.cwd, errlog=stderr.writer, wire=wire)
    elif config.transport == "sse":
        assert config.url is not None
        read_timeout = max(HTTP_READ_TIMEOUT, config.timeout + 30)
        inner = sse_client(
            config.url, headers=dict(config.headers), timeout=config.init_timeout, sse_read_timeout=read_timeout
        )
    else:
        assert config.url is not None
        inner = _streamable_http(config, wire)
    return _watched(inner, wire)


def inherited_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The bot's proxy, certificate and locale variables, for a stdio server."""
    environ = dict(os.environ) if environ is None else environ
    return {
        name: value
        for name, value in environ.items()
        if name in INHERITED_VARIABLES or name.startswith(INHERITED_PREFIXES)
    }


@asynccontextmanager
async def _streamable_http(config: ServerConfig, wire: Wire) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's Streamable HTTP transport with our headers (it takes them only through its HTTP client).

    We end the session with its DELETE ourselves, shielded and bounded: the SDK sends it while closing, and a
    cancelled owner task (the bot stopping) cancelled that request before it left.
    """
    assert config.url is not None
    url = config.url
    timeout = httpx2.Timeout(config.init_timeout, read=max(HTTP_READ_TIMEOUT, config.timeout + 30))
    session: dict[str, str] = {}

    async def note(response: httpx2.Response) -> None:
        if response.status_code >= 400:
            wire.http_failure = http_status_text(response.status_code, str(response.request.url))
        if session_id := response.headers.get(_SESSION_HEADER):
            session[_SESSION_HEADER] = session_id
        if version := response.request.headers.get(_VERSION_HEADER):
            session[_VERSION_HEADER] = version

    hooks = {"response": [note]}
    async with httpx2.AsyncClient(headers=dict(config.headers), timeout=timeout, event_hooks=hooks) as http:
        try:
            async with streamable_http_client(url, http_client=http, terminate_on_close=False) as streams:
                yield streams
        finally:
            if _SESSION_HEADER in session:
                with anyio.CancelScope(shield=True) as scope, suppress(httpx2.HTTPError):
                    scope.deadline = anyio.current_time() + CLOSE_TIMEOUT
                    await http.delete(url, headers=session)


@asynccontextmanager
async def _watched(
    transport: Transport, wire: Wire
) -> AsyncIterator[tuple["_WatchedReadStream", "_WatchedWriteStream"]]:
    """The transport's streams wrapped; the type checkers match the wrappers to the SDK's public Transport."""
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, wire), _WatchedWriteStream(write_stream, wire)
    wire.ended.set()


class _WatchedReadStream:
    """A read stream that passes each message through the wire and sets `wire.ended` at its end (a stdio child
    exited, a stream closed)."""

    def __init__(self, inner: Any, wire: Wire) -> None:
        self._inner = inner
        self._wire = wire

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            item = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._wire.ended.set()
            raise
        return self._wire.received(item)

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

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _WatchedWriteStream:
    """A write stream that tells the wire which requests went out, so that it knows what each answer answers."""

    def __init__(self, inner: Any, wire: Wire) -> None:
        self._inner = inner
        self._wire = wire

    async def send(self, item: SessionMessage, /) -> None:
        self._wire.sent(item)
        await self._inner.send(item)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> "_WatchedWriteStream":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc_val: BaseException | None, exc_tb: TracebackType | None
    ) -> None:
        await self.aclose()


def http_status_text(status: int, url: str) -> str:
    """`HTTP 401 from https://host/mcp`, with what the status means for an operator where it is plain."""
    text = f"HTTP {status} from {public_url(url)}"
    if status == 401:
        text += ": the server wants authentication (give it 'headers' in mcp_servers.json)"
    elif status == 403:
        text += ": the server refused these credentials"
    elif status == 404:
        text += ": nothing there (check the server's 'url')"
    return text


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
        text = http_status_text(exc.response.status_code, str(exc.request.url))
    elif isinstance(exc, httpx2.ConnectError):
        text = f"cannot connect to {public_url(config.url or '')}"
    elif isinstance(exc, httpx2.HTTPError):
        text = f"{type(exc).__name__} talking to {public_url(config.url or '')}"
    else:
        detail = str(exc).strip()
        text = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
    return hide_configured_secrets(text, config)


def hide_configured_secrets(text: str, config: ServerConfig) -> str:
    """`text` with the values this server was configured with as secrets masked (its header values, secret-named
    env values, URL password and query); patterns that look like secrets are host.redact's, in every log line."""
    return mask(text, _secrets(config))


def _secrets(config: ServerConfig) -> Iterable[str]:
    """Every header value, environment values whose names look secret, and the URL's password and query."""
    values = [*config.headers.values(), *(value for name, value in config.env.items() if _SECRET_NAME.search(name))]
    for value in values:
        yield from (part for part in value.split() if len(part) >= _SECRET_MIN_LENGTH)
    if config.url:
        parts = urlsplit(config.url)
        yield from (secret for secret in (parts.password, parts.query) if secret)
