"""The tool catalogue of every configured server, and the router the engine calls tools through.

Shared servers start with the registry. A `scope: "chat"` server starts one listing instance with it (chat 0's),
whose tools and instructions stand for every chat; a chat's own instance starts on its first tool call and stops
when idle (or when too many run). Tools get model-facing names from naming.py. Imports host.mcp and errors.
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
LISTING_CHAT = 0  # a per-chat server's listing instance is this chat's instance (the terminal's default chat)


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """A tool as the model sees it (`name`), with the connection it was listed by (for a per-chat server, the
    listing instance; calls go to the calling chat's own instance)."""

    name: str
    spec: ToolSpec
    connection: ServerConnection

    def openai(self) -> "ChatCompletionToolParam":
        """The chat-completions `tools` entry for this tool."""
        function = {"name": self.name, "description": self.spec.description, "parameters": self.spec.parameters}
        return {"type": "function", "function": function}  # type: ignore[typeddict-item]


class Registry:
    """`async with Registry(configs) as registry:` connects every enabled shared server, and the listing instance
    of every per-chat server, concurrently."""

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
        self._by_name = {config.name: config for config in self.configs}
        self.result_max_chars = result_max_chars
        self.max_chat_instances = max_chat_instances
        self._backoff = {"backoff_first": backoff_first, "backoff_cap": backoff_cap}
        self._listed: dict[str, ServerConnection] = {}  # a shared server, or a per-chat server's listing instance
        self._per_chat: dict[tuple[str, int], ServerConnection] = {}  # chats' own instances, but chat 0's
        self._has_chat_scope = any(config.scope == "chat" for config in self.configs)
        self._lookup_cache: tuple[tuple[Any, ...], dict[str, CatalogueEntry]] | None = None
        self._owners: dict[str, str] = {}  # every model-facing name seen so far -> its server's name
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> "Registry":
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        try:
            for config in self.configs:
                if config.scope == "shared":
                    self._listed[config.name] = self._start(config)
                else:
                    self._listed[config.name] = self._start_instance(config, LISTING_CHAT)
            if self._has_chat_scope:
                self._tasks.start_soon(self._stop_idle_instances)
            await _wait_all_settled(self._listed.values())
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
        """Every server as the chat sees it, in config order, starting nothing: for a per-chat server the chat's
        own instance while it runs, else the listing instance."""
        return [self._per_chat.get((config.name, chat_id)) or self._listed[config.name] for config in self.configs]

    async def _serving(self, config: ServerConfig, chat_id: int) -> ServerConnection:
        """The connection that runs the chat's calls to this server; a chat's own instance starts here, on its
        first call, and this waits until it has connected or failed."""
        if config.scope == "shared" or chat_id == LISTING_CHAT:
            return self._listed[config.name]
        connection = self._per_chat.get((config.name, chat_id))
        if connection is None:
            connection = self._start_chat_instance(config, chat_id)
        connection.last_used = anyio.current_time()
        if connection.status is Status.STARTING:
            await connection.wait_settled()
            connection.last_used = anyio.current_time()  # its idle time starts once it is up
        return connection

    def health(self) -> dict[str, str]:
        """Each enabled server's state, starting nothing: a shared server's status (starting, connected, failed,
        stopped; the reasons stay in the log, as this may be shown to the outside); for a per-chat one its
        listing instance's status and how many chats' own instances run."""
        report = {}
        for config in self.configs:
            status = self._listed[config.name].status.value
            if config.scope == "shared":
                report[config.name] = status
            else:
                running = sum(1 for name, _chat in self._per_chat if name == config.name)
                report[config.name] = f"{status}; per chat, {running} running"
        return report

    def _start_chat_instance(self, config: ServerConfig, chat_id: int) -> ServerConnection:
        if len(self._per_chat) >= self.max_chat_instances:
            self._stop_least_recently_used()
        connection = self._per_chat[(config.name, chat_id)] = self._start_instance(config, chat_id)
        return connection

    def _start_instance(self, config: ServerConfig, chat_id: int) -> ServerConnection:
        instance = config.for_chat(chat_id)
        if instance.cwd and config.cwd and CHAT_ID_PLACEHOLDER in config.cwd:
            os.makedirs(instance.cwd, exist_ok=True)  # a per-chat workspace exists from its first use
        return self._start(instance, chat_id)

    async def catalogue(self, chat_id: int = 0) -> list[CatalogueEntry]:
        """The tools the chat's model may call right now, with their model-facing names. The same for every chat:
        a per-chat server's tools are those of its listing instance. Starts nothing."""
        return list(self._lookup().values())

    def _lookup(self) -> dict[str, CatalogueEntry]:
        """Model-facing name to entry; rebuilt only when a server's tools or connection changed."""
        connections = list(self._listed.values())
        version = tuple((connection, connection.tools) for connection in connections)
        if self._lookup_cache is not None and self._lookup_cache[0] == version:
            return self._lookup_cache[1]
        entries: dict[str, CatalogueEntry] = {}
        for connection in connections:
            for spec in connection.tools:
                name = model_name(spec.server, spec.name, entries)
                entries[name] = CatalogueEntry(name, spec, connection)
                self._owners[name] = spec.server
        self._lookup_cache = (version, entries)
        return entries

    async def openai_tools(self, chat_id: int = 0) -> list["ChatCompletionToolParam"]:
        """The catalogue as chat-completions `tools`."""
        return [entry.openai() for entry in await self.catalogue(chat_id)]

    async def instructions(self, chat_id: int = 0) -> dict[str, str]:
        """Each connected server's own `instructions`, by server name (a per-chat server's listing instance's)."""
        return {
            connection.name: connection.instructions
            for connection in self._listed.values()
            if connection.status is Status.CONNECTED and connection.instructions
        }

    async def call(self, name: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by its model-facing name, in the chat's own instance of a per-chat server (started now if
        it is not running). Raises UnknownToolError or ServerUnavailable."""
        entry = self._lookup().get(name)
        if entry is not None:
            connection = await self._serving(self._by_name[entry.connection.name], chat_id)
            return await self._call(connection, entry.spec.name, arguments)
        owner = self._owners.get(name)
        listed = self._listed.get(owner) if owner is not None else None
        if listed is not None and listed.status is not Status.CONNECTED:
            raise ServerUnavailable(listed.unavailable_reason())
        raise UnknownToolError(f"no tool named {name!r} is available")

    async def call_server_tool(self, server: str, tool: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by server name and the server's own tool name, bypassing the include/exclude filter
        (the operator's `mcpbot call`)."""
        config = self._by_name.get(server)
        if config is None:
            raise ServerUnavailable(f"no enabled server named {server!r}")
        return await self._call(await self._serving(config, chat_id), tool, arguments)

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
        log.info("mcp_chat_instance_stopped", server=key[0], chat_id=key[1], why=why)
        assert self._tasks is not None
        self._tasks.start_soon(connection.stop)


async def _wait_all_settled(connections: Iterable[ServerConnection]) -> None:
    async with anyio.create_task_group() as tasks:
        for connection in connections:
            tasks.start_soon(connection.wait_settled)
