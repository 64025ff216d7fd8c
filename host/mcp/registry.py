"""The tool catalogue of every configured server, and the router the engine calls tools through.

Shared servers start with the registry. A `scope: "chat"` server starts one listing instance with it (chat 0's),
whose tools and instructions stand for every chat; a chat's own instance starts on its first tool call and stops
when idle (or when too many run). Tools get model-facing names from naming.py. The catalogue is a frozen value,
built once per change of any server's tools or connection. Imports host.mcp, host.tokens, host.metrics and errors.
"""

import os
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import structlog

from host import metrics
from host.errors import ServerUnavailable, UnknownToolError
from host.mcp.config import CHAT_ID_PLACEHOLDER, ServerConfig, chat_paths
from host.mcp.connection import BACKOFF_CAP, BACKOFF_FIRST, ServerConnection, Status
from host.mcp.naming import model_name
from host.mcp.tools import ToolResult, ToolSpec
from host.tokens import count_tools_tokens

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


MAX_NARROWED = 64  # sets of switched-off servers whose narrowed catalogue is kept


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What the model is offered, frozen: the tools with their model-facing names, their chat-completions form
    and its token cost, and the connected servers' own `instructions`. Iterating gives the entries."""

    entries: tuple[CatalogueEntry, ...] = ()
    tools: tuple["ChatCompletionToolParam", ...] = ()
    tokens: int = 0
    instructions: Mapping[str, str] = field(default_factory=dict)
    by_name: Mapping[str, CatalogueEntry] = field(default_factory=dict, compare=False)
    hidden: frozenset[str] = frozenset()  # names `without` left out: the model must not call them either
    narrowed: dict[frozenset[str], "Catalogue"] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, entries: Iterable[CatalogueEntry], instructions: Mapping[str, str]) -> "Catalogue":
        entries = tuple(entries)
        tools = tuple(entry.openai() for entry in entries)
        return cls(
            entries=entries,
            tools=tools,
            tokens=count_tools_tokens([dict(tool) for tool in tools]),
            instructions=dict(instructions),
            by_name={entry.name: entry for entry in entries},
        )

    def without(self, servers: Collection[str]) -> "Catalogue":
        """This catalogue less the named servers' tools and instructions (a chat's /mcp toggles); built once per
        set of servers (counting the tokens of large definitions costs milliseconds, on every turn otherwise)."""
        key = frozenset(servers)
        if not key:
            return self
        if key not in self.narrowed:
            if len(self.narrowed) >= MAX_NARROWED:
                self.narrowed.clear()
            kept = [entry for entry in self.entries if entry.spec.server not in key]
            instructions = {name: text for name, text in self.instructions.items() if name not in key}
            hidden = self.hidden | {entry.name for entry in self.entries if entry.spec.server in key}
            self.narrowed[key] = replace(Catalogue.of(kept, instructions), hidden=frozenset(hidden))
        return self.narrowed[key]

    def __iter__(self) -> Iterator[CatalogueEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True, slots=True)
class Reloaded:
    """What a reload changed, by server name: started (new), restarted (changed), stopped (removed), kept."""

    started: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    def summary(self) -> str:
        """`started a; restarted b; 2 kept running`, for a person."""
        changes = [
            f"{label} {', '.join(names)}"
            for label, names in (("started", self.started), ("restarted", self.restarted), ("stopped", self.stopped))
            if names
        ]
        return "; ".join([*(changes or ["no server changed"]), f"{len(self.kept)} kept running"])


class Registry:
    """`async with Registry(configs) as registry:` connects every enabled shared server, and the listing instance
    of every per-chat server, concurrently; `reload(configs)` applies a new server list to the running registry."""

    def __init__(
        self,
        servers: Sequence[ServerConfig],
        *,
        max_chat_instances: int = DEFAULT_MAX_CHAT_INSTANCES,
        backoff_first: float = BACKOFF_FIRST,
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.configs = [config for config in servers if not config.disabled]
        self._by_name = {config.name: config for config in self.configs}
        self.max_chat_instances = max_chat_instances
        self._backoff = {"backoff_first": backoff_first, "backoff_cap": backoff_cap}
        self._listed: dict[str, ServerConnection] = {}  # a shared server, or a per-chat server's listing instance
        self._per_chat: dict[tuple[str, int], ServerConnection] = {}  # chats' own instances, but chat 0's
        self._idle_watch = False  # whether _stop_idle_instances runs (it starts with the first per-chat server)
        self._catalogue: tuple[tuple[Any, ...], Catalogue] | None = None
        self._owners: dict[str, str] = {}  # every model-facing name seen so far -> its server's name
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> "Registry":
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        try:
            for config in self.configs:
                self._start_listed(config)
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

    def _start_listed(self, config: ServerConfig) -> ServerConnection:
        """A shared server, or a per-chat server's listing instance (and the watch over its chats' instances)."""
        if config.scope == "shared":
            connection = self._listed[config.name] = self._start(config)
            return connection
        if not self._idle_watch:
            assert self._tasks is not None
            self._idle_watch = True
            self._tasks.start_soon(self._stop_idle_instances)
        connection = self._listed[config.name] = self._start_instance(config, LISTING_CHAT)
        return connection

    async def reload(self, servers: Sequence[ServerConfig]) -> Reloaded:
        """Apply a new server list: new servers start, changed ones restart, removed ones stop (their calls in
        flight fail as with any lost server), and untouched ones keep running and their chats' instances too.
        Returns once every started server has connected or failed."""
        configs = [config for config in servers if not config.disabled]
        wanted = {config.name: config for config in configs}
        gone = [name for name, old in self._by_name.items() if wanted.get(name) != old]
        changed = [name for name in gone if name in wanted]
        stopping = [self._listed.pop(name) for name in gone]
        stopping += [self._per_chat.pop(key) for key in list(self._per_chat) if key[0] in gone]
        async with anyio.create_task_group() as stops:
            for connection in stopping:
                stops.start_soon(connection.stop)
        new = [config.name for config in configs if config.name not in self._by_name]
        self.configs, self._by_name = configs, wanted
        await _wait_all_settled([self._start_listed(wanted[name]) for name in [*changed, *new]])
        reloaded = Reloaded(
            started=tuple(new),
            restarted=tuple(changed),
            stopped=tuple(name for name in gone if name not in wanted),
            kept=tuple(name for name in wanted if name not in gone and name not in new),
        )
        log.info("mcp_servers_reloaded", **asdict(reloaded))
        return reloaded

    async def forget_chat(self, chat_id: int) -> list[str]:
        """Stop the chat's own instances of per-chat servers; the paths they were given for the chat's files."""
        stopping = [self._per_chat.pop(key) for key in list(self._per_chat) if key[1] == chat_id]
        async with anyio.create_task_group() as stops:
            for connection in stopping:
                stops.start_soon(connection.stop)
        return [path for config in self.configs if config.scope == "chat" for path in chat_paths(config, chat_id)]

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

    def running_instances(self, server: str) -> int:
        """How many chats' own instances of a per-chat server run now."""
        return sum(1 for name, _chat in self._per_chat if name == server)

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

    def names(self) -> list[str]:
        """The configured servers' names, in the file's order."""
        return [config.name for config in self.configs]

    async def catalogue(self, chat_id: int = 0) -> Catalogue:
        """The tools the chat's model may call right now. The same for every chat: a per-chat server's tools and
        instructions are those of its listing instance. Starts nothing."""
        return self._current()

    def _current(self) -> Catalogue:
        """The catalogue, rebuilt only when a server's tools, connection or instructions changed."""
        connections = list(self._listed.values())
        connected = [connection.status is Status.CONNECTED for connection in connections]
        version = tuple(
            (connection, connection.tools, up and connection.instructions)
            for connection, up in zip(connections, connected, strict=True)
        )
        if self._catalogue is not None and self._catalogue[0] == version:
            return self._catalogue[1]
        entries: dict[str, CatalogueEntry] = {}
        for connection in connections:
            for spec in connection.tools:
                name = model_name(spec.server, spec.name, entries)
                entries[name] = CatalogueEntry(name, spec, connection)
                self._owners[name] = spec.server
        instructions = {
            connection.name: connection.instructions
            for connection, up in zip(connections, connected, strict=True)
            if up and connection.instructions
        }
        catalogue = Catalogue.of(entries.values(), instructions)
        self._catalogue = (version, catalogue)
        return catalogue

    async def call(self, name: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by its model-facing name, in the chat's own instance of a per-chat server (started now if
        it is not running). Raises UnknownToolError or ServerUnavailable."""
        entry = self._current().by_name.get(name)
        if entry is not None:
            connection = await self._serving(self._by_name[entry.connection.name], chat_id)
            return await self._call(connection, entry.spec.name, arguments, listed=True)
        owner = self._owners.get(name)
        listed = self._listed.get(owner) if owner is not None else None
        if listed is not None and listed.status is not Status.CONNECTED:
            metrics.tool_call(listed.name, metrics.OTHER, "unavailable")
            raise ServerUnavailable(listed.unavailable_reason())
        metrics.tool_call(metrics.OTHER, metrics.OTHER, "unknown")
        raise UnknownToolError(f"no tool named {name!r} is available")

    async def call_server_tool(self, server: str, tool: str, arguments: dict[str, Any], chat_id: int = 0) -> ToolResult:
        """Call a tool by server name and the server's own tool name, bypassing the include/exclude filter
        (the operator's `mcpbot call`)."""
        config = self._by_name.get(server)
        if config is None:
            raise ServerUnavailable(f"no enabled server named {server!r}")
        return await self._call(await self._serving(config, chat_id), tool, arguments)

    async def _call(
        self, connection: ServerConnection, tool: str, arguments: dict[str, Any], *, listed: bool = False
    ) -> ToolResult:
        """The call, logged and counted; its tool is a metric label only when the catalogue or the server lists it."""
        listed = listed or any(spec.name == tool for spec in connection.tools)
        label = tool if listed else metrics.OTHER
        with structlog.contextvars.bound_contextvars(server=connection.name, tool=tool):
            started = time.perf_counter()
            try:
                result = await connection.call(tool, arguments)
            except ServerUnavailable:
                metrics.tool_call(connection.name, label, "unavailable")
                raise
            seconds = time.perf_counter() - started
            metrics.tool_call(connection.name, label, "error" if result.is_error else "ok", seconds)
            log.info("tool_called", ok=not result.is_error, ms=round(seconds * 1000, 1))
        return result

    async def _stop_idle_instances(self) -> None:
        """Stop per-chat instances nobody used for their server's `idle_timeout`."""
        while True:
            timeouts = [config.idle_timeout for config in self.configs if config.scope == "chat"] or [240.0]
            await anyio.sleep(min(max(min(timeouts) / 4, 0.25), 60.0))
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
