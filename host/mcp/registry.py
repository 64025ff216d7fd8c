"""The tool catalogue of every configured server, and the router the engine calls tools through.

Shared servers start with the registry; a `scope: "chat"` server gets one instance per chat, started on
first use and stopped when idle. Tools get model-facing names from naming.py and are found again by table
lookup. Imports only host.mcp modules and errors.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from host.errors import ServerUnavailable, UnknownToolError
from host.mcp.config import ServerConfig
from host.mcp.connection import BACKOFF_CAP, BACKOFF_FIRST, ServerConnection, Status
from host.mcp.naming import model_name
from host.mcp.schema import openai_tool
from host.mcp.tools import DEFAULT_RESULT_MAX_CHARS, ToolResult, ToolSpec

if TYPE_CHECKING:  # the openai package is slow to import and only its TypedDict is needed here
    from openai.types.chat import ChatCompletionToolParam

log = structlog.get_logger("host.mcp")


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A tool as the model sees it (`name`), with the server connection that runs it."""

    name: str
    spec: ToolSpec
    connection: ServerConnection

    def openai(self) -> "ChatCompletionToolParam":
        return openai_tool(self.name, self.spec.description, self.spec.input_schema)


class Registry:
    """`async with Registry(configs) as registry:` connects every enabled shared server concurrently."""

    def __init__(
        self,
        servers: Sequence[ServerConfig],
        *,
        result_max_chars: int = DEFAULT_RESULT_MAX_CHARS,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.configs = [config for config in servers if not config.disabled]
        self.result_max_chars = result_max_chars
        self._backoff = {"backoff_first": backoff_first, "backoff_cap": backoff_cap}
        self._shared: dict[str, ServerConnection] = {}
        self._per_chat: dict[tuple[str, int], ServerConnection] = {}
        self._last_used: dict[tuple[str, int], float] = {}
        self._has_chat_scope = any(config.scope == "chat" for config in self.configs)
        self._lookups: dict[int, tuple[tuple[Any, ...], dict[str, CatalogueEntry]]] = {}
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> "Registry":
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        for config in self.configs:
            if config.scope == "shared":
                self._shared[config.name] = self._start(config)
        if self._has_chat_scope:
            self._tasks.start_soon(self._stop_idle_instances)
        await _wait_all_settled(self._shared.values())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop every server at once; each stdio child gets stdin closed, then SIGTERM, then SIGKILL."""
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(None, None, None)
        self._tasks = None

    def _start(self, config: ServerConfig) -> ServerConnection:
        assert self._tasks is not None, "use the registry inside `async with`"
        connection = ServerConnection(config, **self._backoff)
        self._tasks.start_soon(connection.run, name=f"mcp-{config.name}")
        return connection

    async def connections(self, chat_id: int = 0) -> list[ServerConnection]:
        """Every server the chat can use, in config order; starts the chat's own instances if needed."""
        waiting = []
        result = []
        for config in self.configs:
            if config.scope == "shared":
                result.append(self._shared[config.name])
                continue
            key = (config.name, chat_id)
            connection = self._per_chat.get(key)
            if connection is None:
                connection = self._per_chat[key] = self._start(config.for_chat(chat_id))
                waiting.append(connection)
            self._last_used[key] = time.monotonic()
            result.append(connection)
        if waiting:
            await _wait_all_settled(waiting)
        return result

    async def catalogue(self, chat_id: int = 0) -> list[CatalogueEntry]:
        """The tools the chat's model may call right now, with their model-facing names."""
        return list((await self._lookup(chat_id)).values())

    async def _lookup(self, chat_id: int) -> dict[str, CatalogueEntry]:
        """Model-facing name to entry; rebuilt only when a server's tools or connection changed."""
        connections = await self.connections(chat_id)
        version = tuple((connection, connection.tools) for connection in connections)
        cache_key = chat_id if self._has_chat_scope else 0
        cached = self._lookups.get(cache_key)
        if cached is not None and cached[0] == version:
            return cached[1]
        entries: dict[str, CatalogueEntry] = {}
        for connection in connections:
            for spec in connection.tools:
                name = model_name(spec.server, spec.name, entries)
                entries[name] = CatalogueEntry(name, spec, connection)
        self._lookups[cache_key] = (version, entries)
        return entries

    async def openai_tools(self, chat_id: int = 0) -> list["ChatCompletionToolParam"]:
        """The catalogue as chat-completions `tools`."""
        return [entry.openai() for entry in await self.catalogue(chat_id)]

    async def instructions(self, chat_id: int = 0) -> dict[str, str]:
        """Each connected server's own `instructions`, by server name."""
        return {
            connection.name: connection.instructions
            for connection in await self.connections(chat_id)
            if connection.status is Status.CONNECTED and connection.instructions
        }

    async def call(self, name: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by its model-facing name. Raises UnknownToolError or ServerUnavailable."""
        entry = (await self._lookup(chat_id)).get(name)
        if entry is None:
            raise UnknownToolError(f"no tool named {name!r} is available")
        return await self._call(entry.connection, entry.spec.name, arguments)

    async def call_server_tool(self, server: str, tool: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by its server's name and the server's own tool name (the CLI's `call`)."""
        for connection in await self.connections(chat_id):
            if connection.name == server:
                return await self._call(connection, tool, arguments)
        raise ServerUnavailable(f"no enabled server named {server!r}")

    async def _call(self, connection: ServerConnection, tool: str, arguments: dict[str, Any]) -> ToolResult:
        with structlog.contextvars.bound_contextvars(server=connection.name, tool=tool):
            started = time.perf_counter()
            result = await connection.call(tool, arguments)
            log.info("tool_called", ok=not result.is_error, ms=round((time.perf_counter() - started) * 1000, 1))
        return result.capped(self.result_max_chars)

    async def _stop_idle_instances(self) -> None:
        """Stop per-chat instances nobody used for their server's `idle_timeout`."""
        timeouts = [config.idle_timeout for config in self.configs if config.scope == "chat"]
        period = min(max(min(timeouts) / 4, 0.5), 60.0)
        while True:
            await anyio.sleep(period)
            now = time.monotonic()
            for key, connection in list(self._per_chat.items()):
                if now - self._last_used[key] >= connection.config.idle_timeout:
                    del self._per_chat[key], self._last_used[key]
                    self._lookups.pop(key[1], None)
                    log.info("mcp_chat_instance_idle", server=key[0], chat_id=key[1])
                    assert self._tasks is not None
                    self._tasks.start_soon(connection.stop)


async def _wait_all_settled(connections: Sequence[ServerConnection] | Any) -> None:
    async with anyio.create_task_group() as tasks:
        for connection in connections:
            tasks.start_soon(connection.wait_settled)
