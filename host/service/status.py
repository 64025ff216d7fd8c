"""What the front ends show about the bot's parts, as values: each server's state and tool count (with the
reason it is down, redacted, for admins and the operator), each tool's one-line summary, and readiness. Built
here once from the registry and the model; front ends only format them. Starts nothing.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from host.mcp.connection import Status
from host.mcp.registry import Catalogue, Registry
from host.redact import redact

SUMMARY_CHARS = 120
READY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ServerStatus:
    name: str
    transport: str  # stdio, sse or http
    state: str  # connected, starting, failed or stopped
    tools: int
    reason: str | None  # why it is not connected, redacted; may still name operator details: admins only
    running_per_chat: int | None  # a per-chat server's running instances (chats' own); None for a shared server

    @property
    def connected(self) -> bool:
        return self.state == Status.CONNECTED.value


@dataclass(frozen=True, slots=True)
class ToolInfo:
    name: str  # as the model sees it
    server: str
    mcp_name: str  # the server's own name for it
    description: str

    @property
    def summary(self) -> str:
        """The first line of its description, cut to SUMMARY_CHARS."""
        return (self.description.strip().splitlines() or [""])[0][:SUMMARY_CHARS]


@dataclass(frozen=True, slots=True)
class Readiness:
    database: bool
    model: bool
    servers: tuple[ServerStatus, ...]

    @property
    def ready(self) -> bool:
        return self.database and self.model


async def servers(registry: Registry, chat_id: int = 0) -> list[ServerStatus]:
    """Every enabled server as the chat sees it, in config order."""
    statuses = []
    for connection in await registry.connections(chat_id):
        connected = connection.status is Status.CONNECTED
        reason = redact(connection.error) if not connected and connection.error else None
        per_chat = registry.running_instances(connection.name) if connection.config.scope == "chat" else None
        statuses.append(
            ServerStatus(
                name=connection.name,
                transport=connection.config.transport,
                state=connection.status.value,
                tools=len(connection.tools),
                reason=reason,
                running_per_chat=per_chat,
            )
        )
    return statuses


def tools(catalogue: Catalogue) -> list[ToolInfo]:
    return [
        ToolInfo(
            name=entry.name,
            server=entry.spec.server,
            mcp_name=entry.spec.name,
            description=entry.spec.description,
        )
        for entry in catalogue
    ]


async def readiness(
    registry: Registry, database: Callable[[], Awaitable[bool]], model: Callable[[], Awaitable[bool]]
) -> Readiness:
    """The database and the model checked at the same time, each for at most READY_SECONDS."""
    results = {"database": False, "model": False}

    async def check(name: str, probe: Callable[[], Awaitable[bool]]) -> None:
        with anyio.move_on_after(READY_SECONDS):
            results[name] = await probe()

    async with anyio.create_task_group() as checks:
        checks.start_soon(check, "database", database)
        checks.start_soon(check, "model", model)
    return Readiness(results["database"], results["model"], tuple(await servers(registry)))
