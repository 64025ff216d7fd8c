"""One MCP server connection, owned by one task: open, list tools, follow list changes, reopen after a failure.

Every `async with Client` is entered and left in the owner task (`run`), as the SDK requires; other tasks
only call tools through it. Imports config, tools, stderr and errors; nothing else from the host.
"""

import enum
import fnmatch
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx2
import mcp_types
import structlog
from mcp import Client, MCPError, StdioServerParameters
from mcp.client._transport import Transport, TransportStreams
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import SubscriptionLost
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from host.errors import ServerUnavailable
from host.mcp.config import ServerConfig
from host.mcp.stderr import StderrTail
from host.mcp.tools import ToolResult, ToolSpec

log = structlog.get_logger("host.mcp")

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
STABLE_AFTER = 10.0  # a connection that lived this long resets the backoff
MAX_TOOL_PAGES = 100


class Status(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    FAILED = "failed"
    STOPPED = "stopped"


class ServerConnection:
    """A supervised connection to one server; `run()` is its owner task, `stop()` ends it from anywhere."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.config = config
        self.status = Status.STARTING
        self.error: str | None = None
        self.tools: tuple[ToolSpec, ...] = ()
        self.instructions: str | None = None
        self.protocol_version: str | None = None
        self.retry_at: float | None = None
        self._backoff_first = backoff_first
        self._backoff_cap = backoff_cap
        self._client: Client | None = None
        self._lost = anyio.Event()
        self._lost_reason: str | None = None
        self._refresh_wanted = anyio.Event()
        self._settled = anyio.Event()
        self._stopped = anyio.Event()
        self._scope = anyio.CancelScope()
        self._changed = anyio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    async def run(self) -> None:
        """Connect, serve until the connection is lost, wait out the backoff, repeat until stopped."""
        failures = 0
        try:
            with self._scope:
                while True:
                    started = anyio.current_time()
                    connected = await self._connect_once()
                    lived = anyio.current_time() - started
                    failures = 0 if connected and lived >= STABLE_AFTER else failures + 1
                    delay = min(self._backoff_cap, self._backoff_first * 2 ** (failures - 1)) if failures else 0.0
                    self.retry_at = anyio.current_time() + delay
                    log.warning("mcp_server_down", server=self.name, reason=self.error, retry_in=round(delay, 2))
                    await anyio.sleep(delay)
        finally:
            self._set(Status.STOPPED, None)
            self._settled.set()
            self._stopped.set()

    async def wait_until(self, condition: Callable[["ServerConnection"], bool]) -> None:
        """Return once `condition(self)` holds; it is checked again after every change of status or tools."""
        while not condition(self):
            await self._changed.wait()

    def _notify_change(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_settled(self) -> None:
        """Return once the first attempt has connected or failed."""
        await self._settled.wait()

    async def stop(self) -> None:
        """Close the connection (stdio: stdin closed, then SIGTERM, then SIGKILL) and wait for the owner task."""
        self._scope.cancel()
        await self._stopped.wait()

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Call one tool; a failure of the tool itself comes back as an error result, a dead server raises.

        The SDK's read timeout bounds the call and sends `notifications/cancelled` when it runs out.
        """
        client = self._client
        if client is None:
            raise ServerUnavailable(self._unavailable_reason())
        seconds = self.config.timeout
        try:
            result = await client.call_tool(tool, arguments, read_timeout_seconds=seconds)
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED:
                raise ServerUnavailable(self._lose("the server closed the connection")) from None
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                return ToolResult.error(f"{tool} timed out after {seconds:g} s and was cancelled")
            return ToolResult.error(f"{tool} failed: {exc.message} (MCP error {exc.code})")
        except ValidationError as exc:
            return ToolResult.error(f"{tool}: the server sent a malformed result ({exc.error_count()} problems)")
        except (httpx2.HTTPError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise ServerUnavailable(self._lose(f"unreachable: {_describe(exc)}")) from None
        return ToolResult.from_mcp(result)

    def _lose(self, reason: str) -> str:
        """Take a broken connection out of service at once (the owner task reconnects); returns a message."""
        if self._client is not None:
            self._client = None
            self._lost_reason = reason
            self._set(Status.FAILED, reason)
            self._lost.set()
        return f"server {self.name!r}: {reason}"

    def _unavailable_reason(self) -> str:
        if self.status is Status.STARTING:
            return f"server {self.name!r} is still starting"
        if self.status is Status.STOPPED:
            return f"server {self.name!r} is stopped"
        retry = ""
        if self.retry_at is not None:
            retry = f"; retrying in {max(0.0, self.retry_at - anyio.current_time()):.0f} s"
        return f"server {self.name!r} is not connected ({self.error}){retry}"

    def _set(self, status: Status, error: str | None) -> None:
        self.status, self.error = status, error
        if status is not Status.CONNECTED:
            self.tools = ()
        self._notify_change()

    async def _connect_once(self) -> bool:
        """One connection's whole life; returns whether it got as far as listing tools."""
        self._lost = anyio.Event()
        self._lost_reason = None
        stderr = StderrTail(self.name) if self.config.transport == "stdio" else None
        connected = False
        reason = "connection closed"
        try:
            with anyio.CancelScope() as init_scope:
                init_scope.deadline = anyio.current_time() + self.config.init_timeout
                async with Client(
                    self._transport(stderr),
                    message_handler=self._on_message,
                    client_info=mcp_types.Implementation(name="mcpbot", version="0.1.0"),
                ) as client:
                    if stderr:
                        stderr.close_writer()
                    self.instructions = client.instructions
                    self.protocol_version = client.protocol_version
                    async with anyio.create_task_group() as tasks:
                        # Subscribe before listing, so that no change between the two goes unnoticed.
                        await tasks.start(self._listen, client)
                        await self._load_tools(client)
                        init_scope.deadline = math.inf
                        self._client = client
                        connected = True
                        self._set(Status.CONNECTED, None)
                        self._settled.set()
                        log.info(
                            "mcp_server_connected",
                            server=self.name,
                            tools=len(self.tools),
                            protocol=client.protocol_version,
                        )
                        tasks.start_soon(self._reload_when_asked, client)
                        await self._lost.wait()
                        tasks.cancel_scope.cancel()
            if init_scope.cancelled_caught and not connected:
                reason = f"did not start within {self.config.init_timeout:g} s"
        except Exception as exc:
            reason = _describe(exc)
        finally:
            self._client = None
            if stderr:
                stderr.close_writer()
        reason = self._lost_reason or reason
        if stderr and stderr.tail():
            reason = f"{reason}; stderr: {stderr.tail()}"
        self._set(Status.FAILED, reason)
        self._settled.set()
        return connected

    def _transport(self, stderr: StderrTail | None) -> Transport:
        config = self.config
        inner: Transport
        if config.transport == "stdio":
            assert config.command is not None and stderr is not None
            params = StdioServerParameters(
                command=config.command, args=list(config.args), env=dict(config.env) or None, cwd=config.cwd
            )
            inner = stdio_client(params, errlog=stderr.writer)
        elif config.transport == "sse":
            assert config.url is not None
            inner = sse_client(config.url, headers=dict(config.headers), timeout=config.init_timeout)
        else:
            assert config.url is not None
            inner = _streamable_http(config.url, dict(config.headers), config.init_timeout)
        return _watched(inner, self._lost)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._refresh_wanted.set()
        elif isinstance(message, Exception):
            log.debug("mcp_transport_error", server=self.name, error=_describe(message))

    async def _reload_when_asked(self, client: Client) -> None:
        """Reload the tool list each time the server says it changed (either protocol era)."""
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted = anyio.Event()
            try:
                with anyio.fail_after(self.config.init_timeout):
                    await self._load_tools(client)
                log.info("mcp_tools_changed", server=self.name, tools=len(self.tools))
            except Exception as exc:
                log.warning("mcp_tools_refresh_failed", server=self.name, error=_describe(exc))

    async def _listen(self, client: Client, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """In the 2026-07-28 era, change notices come on a `subscriptions/listen` stream; the handshake era
        sends them as notifications to `_on_message`. Reports started once subscribed (or not needed)."""
        capabilities = client.server_capabilities.tools
        if client.protocol_version not in MODERN_PROTOCOL_VERSIONS or not (capabilities and capabilities.list_changed):
            task_status.started()
            return
        subscribed = False
        try:
            async with client.listen(tools_list_changed=True) as subscription:
                task_status.started()
                subscribed = True
                async for _event in subscription:
                    self._refresh_wanted.set()
        except SubscriptionLost:  # the server went away without closing the stream
            self._lose("the server's event stream broke off")
        except Exception as exc:  # losing the stream loses change notices, not the connection
            log.info("mcp_listen_ended", server=self.name, error=_describe(exc))
        if not subscribed:
            task_status.started()

    async def _load_tools(self, client: Client) -> None:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _page in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        wanted = self.config.tools
        self.tools = tuple(
            ToolSpec.from_mcp(self.name, tool)
            for tool in listed
            if any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in wanted.include)
            and not any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in wanted.exclude)
        )
        self._notify_change()


@asynccontextmanager
async def _streamable_http(
    url: str, headers: dict[str, str], connect_timeout: float
) -> AsyncIterator[TransportStreams]:
    """The SDK's Streamable HTTP transport with our headers (it takes them only through its HTTP client)."""
    timeout = httpx2.Timeout(connect_timeout, read=300.0)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


@asynccontextmanager
async def _watched(transport: Transport, lost: anyio.Event) -> AsyncIterator[TransportStreams]:
    """The transport's streams, with `lost` set when the server side ends (EOF on the read stream)."""
    async with transport as (read_stream, write_stream):
        yield _WatchedReadStream(read_stream, lost), write_stream
    lost.set()


class _WatchedReadStream:
    """A read stream that sets an event when it reaches its end."""

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


def _describe(exc: BaseException) -> str:
    """One line for a human: the innermost meaningful exception, without a traceback."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, MCPError):
        return exc.message
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect: {exc}"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
