"""One MCP server connection, owned by one task: open, list tools, follow list changes, reopen after a failure.

Every `async with Client` is entered and left in the owner task (`run`), as the SDK requires; other tasks
only call tools through it. Imports config, tools, transports, stderr, wire, errors and metrics; nothing else from
the host.
"""

import enum
import fnmatch
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import mcp_types
import structlog
from mcp import Client, MCPError
from mcp.client.session import ClientRequestContext
from mcp.client.subscriptions import SubscriptionLost
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from host import metrics
from host.backoff import backoff
from host.errors import ServerUnavailable
from host.mcp.config import ServerConfig
from host.mcp.server_log import ServerLog
from host.mcp.stderr import StderrTail
from host.mcp.stdio import exit_text
from host.mcp.tools import ToolResult, ToolSpec
from host.mcp.transports import describe_failure, hide_configured_secrets, open_transport
from host.mcp.wire import Wire

log = structlog.get_logger("host.mcp")

STDERR_DRAIN_SECONDS = 1.0

BACKOFF_FIRST = 0.5
BACKOFF_CAP = 30.0
STABLE_AFTER = 10.0  # a connection that lived this long resets the backoff
MAX_TOOL_PAGES = 100
# A call that cannot even be cancelled within this long after its timeout means the server is not reading
# what we send (a full stdin pipe, a stopped process), and the connection is taken down. The SDK gives up
# sending the cancellation after 5 s, so a call always ends within its timeout + 5 s.
STUCK_AFTER = 2.0
# -32000 is both the SDK's "connection closed" and the first code of JSON-RPC's range for servers' own errors.
# It means a lost connection only when the transport's stream ended too; that happens at once when it is so.
CLOSED_GRACE = 1.0
_SDK_CLOSED_MESSAGE = "Connection closed"
_SDK_HTTP_ERROR_MESSAGE = "Server returned an error response"  # the SDK's stand-in for an HTTP error status


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
        chat_id: int | None = None,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.config = config
        self.status = Status.STARTING
        self.error: str | None = None
        self.tools: tuple[ToolSpec, ...] = ()
        self.instructions: str | None = None
        self.retry_at: float | None = None
        self.calls_in_flight = 0
        self.last_used = anyio.current_time()
        self._gauged = chat_id in (None, 0)  # a shared server or a per-chat server's listing instance
        if self._gauged:
            metrics.server_up(config.name, False)
        self._log = log.bind(server=config.name, **({} if chat_id is None else {"chat_id": chat_id}))
        self._backoff_first = backoff_first
        self._backoff_cap = backoff_cap
        self._client: Client | None = None
        self._lost = anyio.Event()
        self._lost_reason: str | None = None
        self._wire = Wire(self._lost)
        self._refresh_wanted = anyio.Event()
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
                    delay = backoff(failures, self._backoff_first, self._backoff_cap)
                    self.retry_at = anyio.current_time() + delay
                    self._log.warning("mcp_server_down", reason=self.error, retry_in=round(delay, 2))
                    await anyio.sleep(delay)
        finally:
            self._set(Status.STOPPED, None)
            self._stopped.set()

    async def wait_until(self, condition: Callable[["ServerConnection"], bool]) -> None:
        """Return once `condition(self)` holds; it is checked again after every change of status or tools."""
        while not condition(self):
            await self._changed.wait()

    async def wait_settled(self) -> None:
        """Return once the first attempt has connected or failed (or the connection was stopped)."""
        await self.wait_until(lambda connection: connection.status is not Status.STARTING)

    async def stop(self) -> None:
        """Close the connection (stdio: stdin closed, then SIGTERM, then SIGKILL) and wait for the owner task."""
        self._scope.cancel()
        await self._stopped.wait()

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Call one tool. A failure of the tool itself is an error result; a connection that is down raises.

        At the config's `timeout` the call is abandoned, and the SDK sends `notifications/cancelled`.
        """
        client = self._client
        if client is None:
            raise ServerUnavailable(self.unavailable_reason())
        seconds = self.config.timeout
        self.calls_in_flight += 1
        started = anyio.current_time()
        try:
            with anyio.move_on_after(seconds):
                return await self._call(client, tool, arguments)
            if anyio.current_time() - started > seconds + STUCK_AFTER:  # not even the cancellation got through
                raise ServerUnavailable(self._lose(client, f"stopped reading requests ({tool} ran past {seconds:g} s)"))
            return ToolResult.error(f"{tool} timed out after {seconds:g} s and was cancelled")
        finally:
            self.calls_in_flight -= 1
            self.last_used = anyio.current_time()

    async def _call(self, client: Client, tool: str, arguments: dict[str, Any]) -> ToolResult:
        try:
            result = await client.call_tool(tool, arguments)
        except MCPError as exc:
            if exc.code == mcp_types.CONNECTION_CLOSED and await self._connection_ended(exc):
                raise ServerUnavailable(self._lose(client, "the server closed the connection")) from None
            message = exc.message
            if message == _SDK_HTTP_ERROR_MESSAGE and self._wire.http_failure:
                message = self._wire.http_failure
            return ToolResult.error(f"{tool} failed: {message} (MCP error {exc.code})")
        except ValidationError as exc:
            return ToolResult.error(f"{tool}: the server sent a malformed result ({exc.error_count()} problems)")
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            reason = f"unreachable: {describe_failure(exc, self.config)}"
            raise ServerUnavailable(self._lose(client, reason)) from None
        except Exception as exc:  # the SDK's own checks, e.g. structured content that breaks the output schema
            return ToolResult.error(f"{tool} failed: {describe_failure(exc, self.config)}")
        return ToolResult.from_mcp(result)

    async def _connection_ended(self, exc: MCPError) -> bool:
        """Whether a -32000 error means the connection is gone, rather than the server's own error for a call."""
        if exc.message == _SDK_CLOSED_MESSAGE and exc.data is None:
            with anyio.move_on_after(CLOSED_GRACE):
                await self._wire.ended.wait()
        return self._wire.ended.is_set()

    def _lose(self, client: Client, reason: str) -> str:
        """Take a broken connection out of service at once (the owner task reconnects); returns a message.

        Only the client that broke is taken down: a late failure of an old client leaves a new one alone.
        """
        if self._client is client:
            self._client = None
            self._lost_reason = reason
            self._set(Status.FAILED, reason)
            self._lost.set()
        return f"server {self.name!r}: {reason}"

    def unavailable_reason(self) -> str:
        """Why calls fail now, for the model and the user."""
        if self.status is Status.STARTING:
            return f"server {self.name!r} is still starting"
        if self.status is Status.STOPPED:
            return f"server {self.name!r} is stopped"
        retry = ""
        if self.retry_at is not None:
            retry = f"; retrying in {max(0.0, self.retry_at - anyio.current_time()):.1f} s"
        return f"server {self.name!r} is not connected ({self.error}){retry}"

    def _set(self, status: Status, error: str | None) -> None:
        self.status, self.error = status, error
        if status is not Status.CONNECTED:
            self.tools = ()
        if self._gauged:
            metrics.server_up(self.name, status is Status.CONNECTED)
        self._changed.set()
        self._changed = anyio.Event()

    async def _connect_once(self) -> bool:
        """One connection's whole life; returns whether it got as far as listing tools."""
        self._lost = anyio.Event()
        self._lost_reason = None
        self._wire = wire = Wire(self._lost)
        stderr = StderrTail(self.name) if self.config.transport == "stdio" else None
        connected = False
        reason = "connection closed"
        try:
            with anyio.CancelScope() as init_scope:
                init_scope.deadline = anyio.current_time() + self.config.init_timeout
                async with Client(
                    open_transport(self.config, stderr, wire),
                    message_handler=self._on_message,
                    logging_callback=ServerLog(self.config, self._log),
                    list_roots_callback=self._roots if self.config.roots else None,
                    log_level="info",  # 2026-07-28 servers send log messages only to requests that opt in
                    client_info=mcp_types.Implementation(name="mcpbot", version="0.1.0"),
                ) as client:
                    if stderr:
                        stderr.close_writer()
                    self.instructions = client.instructions
                    wire.protocol_version = client.protocol_version
                    async with anyio.create_task_group() as tasks:
                        # Subscribe before listing, so that no change between the two goes unnoticed.
                        await tasks.start(self._listen, client)
                        self.tools = await self._list_tools(client)
                        init_scope.deadline = math.inf
                        self._client = client
                        connected = True
                        self._set(Status.CONNECTED, None)
                        self._log.info("mcp_server_connected", tools=len(self.tools), protocol=client.protocol_version)
                        tasks.start_soon(self._reload_when_asked, client)
                        await self._lost.wait()
                        self._lose(client, "connection closed")
                        tasks.cancel_scope.cancel()
            if init_scope.cancelled_caught and not connected:
                reason = f"did not start within {self.config.init_timeout:g} s"
        except Exception as exc:
            reason = describe_failure(exc, self.config)
            if reason == _SDK_HTTP_ERROR_MESSAGE and wire.http_failure:
                reason = wire.http_failure
        finally:
            self._client = None
            if stderr:
                stderr.close_writer()
        reason = self._lost_reason or reason
        if wire.exit_status is not None:
            if stderr:
                await anyio.to_thread.run_sync(stderr.drained, STDERR_DRAIN_SECONDS)  # its last words explain it
            ended = exit_text(wire.exit_status)
            reason = ended if reason.lower() == "connection closed" else f"{reason}; {ended}"
        if wire.non_json and not connected and self.config.transport == "stdio":
            reason = f"{reason}; it wrote non-JSON on stdout, which is only for the protocol: {wire.non_json}"
        if stderr and stderr.tail():
            reason = f"{reason}; stderr: {stderr.tail()}"
        self._set(Status.FAILED, hide_configured_secrets(reason, self.config))
        return connected

    async def _roots(self, context: ClientRequestContext) -> mcp_types.ListRootsResult | mcp_types.ErrorData:
        """The folders this server may work in (its config's `roots`; a per-chat server's: its chat's folders)."""
        roots = [
            mcp_types.Root.model_validate({"uri": Path(root).as_uri(), "name": Path(root).name})
            for root in self.config.roots
        ]
        return mcp_types.ListRootsResult(roots=roots)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            self._refresh_wanted.set()

    async def _reload_when_asked(self, client: Client) -> None:
        """Reload the tool list each time the server says it changed (either protocol era)."""
        while True:
            await self._refresh_wanted.wait()
            self._refresh_wanted = anyio.Event()
            try:
                with anyio.fail_after(self.config.init_timeout):
                    tools = await self._list_tools(client)
            except Exception as exc:
                self._log.warning("mcp_tools_refresh_failed", error=describe_failure(exc, self.config))
                continue
            if self._client is client:
                self.tools = tools
                self._set(Status.CONNECTED, None)
                self._log.info("mcp_tools_changed", tools=len(tools))

    async def _listen(self, client: Client, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """In the 2026-07-28 era change notices come on a `subscriptions/listen` stream (the handshake era
        sends notifications to `_on_message`). Reports started once subscribed, or when there is nothing to do."""
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
            self._lose(client, "the server's event stream broke off")
        except Exception as exc:  # losing the stream loses change notices, not the connection
            self._log.info("mcp_listen_ended", error=describe_failure(exc, self.config))
        if not subscribed:
            task_status.started()

    async def _list_tools(self, client: Client) -> tuple[ToolSpec, ...]:
        """Every page of tools/list, filtered by the config's include/exclude; unusable tools are skipped."""
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _page in range(MAX_TOOL_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="bypass")
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        for name, reason in self._wire.skipped_tools.items():
            self._log.warning("mcp_tool_skipped", tool=name, reason=f"the SDK refuses its definition: {reason}")
        self._wire.skipped_tools.clear()
        wanted = self.config.tools
        specs = []
        for tool in listed:
            if not any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in wanted.include):
                continue
            if any(fnmatch.fnmatchcase(tool.name, pattern) for pattern in wanted.exclude):
                continue
            if tool.execution and tool.execution.task_support == "required":
                # Such a tool can only be called as a task, which this host does not do: offering it would fail.
                self._log.warning("mcp_tool_skipped", tool=tool.name, reason="it runs only as a task (taskSupport)")
                continue
            try:
                specs.append(ToolSpec.from_mcp(self.name, tool))
            except (TypeError, ValueError, AttributeError) as exc:
                self._log.warning("mcp_tool_skipped", tool=tool.name, reason=f"unusable input schema: {exc}")
        return tuple(specs)
