"""The tool catalogue of every configured server, and the router the engine calls tools through.

Shared servers start with the registry; a `scope: "chat"` server gets one instance per chat, started on
first use and stopped when idle (or when too many run). Tools get model-facing names from naming.py and are
found again by table lookup. Imports only host.mcp modules and errors.
"""

import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from host.errors import ServerUnavailable, UnknownToolError
from host.mcp.config import CHAT_ID_PLACEHOLDER, ServerConfig
from host.mcp.connection import BACKOFF_CAP, BACKOFF_FIRST, ServerConnection, Status
from host.mcp.naming import model_name
from host.mcp.tools import DEFAULT_RESULT_MAX_CHARS, ToolResult, ToolSpec

if TYPE_CHECKING:  # the openai package is slow to import and only its TypedDict is needed here
    from openai.types.chat import ChatCompletionToolParam

log = structlog.get_logger("host.mcp")

DEFAULT_MAX_CHAT_INSTANCES = 100


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A tool as the model sees it (`name`), with the server connection that runs it."""

    name: str
    spec: ToolSpec
    connection: ServerConnection

    def openai(self) -> "ChatCompletionToolParam":
        """The chat-completions `tools` entry for this tool."""
        function = {"name": self.name, "description": self.spec.description, "parameters": self.spec.parameters}
        return {"type": "function", "function": function}  # type: ignore[typeddict-item]


class Registry:
    """`async with Registry(configs) as registry:` connects every enabled shared server concurrently."""

    def __init__(
        self,
        servers: Sequence[ServerConfig],
        *,
        result_max_chars: int = DEFAULT_RESULT_MAX_CHARS,
        max_chat_instances: int = DEFAULT_MAX_CHAT_INSTANCES,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.configs = [config for config in servers if not config.disabled]
        self.result_max_chars = result_max_chars
        self.max_chat_instances = max_chat_instances
        self._backoff = {"backoff_first": backoff_first, "backoff_cap": backoff_cap}
        self._shared: dict[str, ServerConnection] = {}
        self._per_chat: dict[tuple[str, int], ServerConnection] = {}
        self._has_chat_scope = any(config.scope == "chat" for config in self.configs)
        self._lookups: dict[int, tuple[tuple[Any, ...], dict[str, CatalogueEntry]]] = {}
        self._owners: dict[str, str] = {}  # every model-facing name seen so far -> its server's name
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> "Registry":
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        try:
            for config in self.configs:
                if config.scope == "shared":
                    self._shared[config.name] = self._start(config)
            if self._has_chat_scope:
                self._tasks.start_soon(self._stop_idle_instances)
            await _wait_all_settled(self._shared.values())
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop every server at once; each stdio child gets stdin closed, then SIGTERM, then SIGKILL."""
        assert self._tasks is not None
        tasks, self._tasks = self._tasks, None
        tasks.cancel_scope.cancel()
        await tasks.__aexit__(None, None, None)

    def _start(self, config: ServerConfig, chat_id: int | None = None) -> ServerConnection:
        assert self._tasks is not None, "use the registry inside `async with`"
        connection = ServerConnection(config, chat_id=chat_id, **self._backoff)
        self._tasks.start_soon(connection.run, name=f"mcp-{config.name}")
        return connection

    async def connections(self, chat_id: int = 0) -> list[ServerConnection]:
        """Every server the chat can use, in config order; starts the chat's own instances if needed."""
        result = []
        own = []
        for config in self.configs:
            if config.scope == "shared":
                result.append(self._shared[config.name])
                continue
            connection = self._per_chat.get((config.name, chat_id))
            if connection is None:
                connection = self._start_chat_instance(config, chat_id)
            connection.last_used = anyio.current_time()
            own.append(connection)
            result.append(connection)
        if own:
            await _wait_all_settled(own)
            for connection in own:
                connection.last_used = anyio.current_time()  # its idle time starts once it is up
        return result

    def health(self) -> dict[str, str]:
        """Each enabled server's state, starting nothing: a shared server's status (starting, connected, failed,
        stopped; the reasons stay in the log, as this may be shown to the outside), and how many instances run
        for a per-chat one."""
        report = {}
        for config in self.configs:
            if config.scope == "shared":
                report[config.name] = self._shared[config.name].status.value
            else:
                running = sum(1 for name, _chat in self._per_chat if name == config.name)
                report[config.name] = f"per chat, {running} running"
        return report

    def _start_chat_instance(self, config: ServerConfig, chat_id: int) -> ServerConnection:
        if len(self._per_chat) >= self.max_chat_instances:
            self._stop_least_recently_used()
        instance = config.for_chat(chat_id)
        if instance.cwd and config.cwd and CHAT_ID_PLACEHOLDER in config.cwd:
            os.makedirs(instance.cwd, exist_ok=True)  # a per-chat workspace exists from its first use
        connection = self._per_chat[(config.name, chat_id)] = self._start(instance, chat_id)
        self._lookups.pop(chat_id, None)
        return connection

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
                self._owners[name] = spec.server
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
        if entry is not None:
            return await self._call(entry.connection, entry.spec.name, arguments)
        owner = self._owners.get(name)
        for connection in await self.connections(chat_id):
            if connection.name == owner and connection.status is not Status.CONNECTED:
                raise ServerUnavailable(connection.unavailable_reason())
        raise UnknownToolError(f"no tool named {name!r} is available")

    async def call_server_tool(self, server: str, tool: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by server name and the server's own tool name, bypassing the include/exclude filter
        (the operator's `mcpbot call`)."""
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
        period = min(max(min(timeouts) / 4, 0.25), 60.0)
        while True:
            await anyio.sleep(period)
            now = anyio.current_time()
            for key, connection in list(self._per_chat.items()):
                idle = now - connection.last_used >= connection.config.idle_timeout
                if idle and not connection.calls_in_flight and connection.status is not Status.STARTING:
                    self._stop_instance(key, "idle")

    def _stop_least_recently_used(self) -> None:
        quiet = [
            (c.last_used, key)
            for key, c in self._per_chat.items()
            if not c.calls_in_flight and c.status is not Status.STARTING
        ]
        if quiet:
            self._stop_instance(min(quiet)[1], "too many per-chat instances")

    def _stop_instance(self, key: tuple[str, int], why: str) -> None:
        connection = self._per_chat.pop(key)
        self._lookups.pop(key[1], None)
        log.info("mcp_chat_instance_stopped", server=key[0], chat_id=key[1], why=why)
        assert self._tasks is not None
        self._tasks.start_soon(connection.stop)


async def _wait_all_settled(connections: Iterable[ServerConnection]) -> None:
    async with anyio.create_task_group() as tasks:
        for connection in connections:
            tasks.start_soon(connection.wait_settled)
