"""The read-only database MCP server: tools query_database, get_schema and list_tables over one SQLAlchemy async
engine, created in the server's lifespan and disposed when it ends. Never imports `host`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from sqlalchemy.engine import URL

from servers.database.execute import Database, QueryError
from servers.database.guard import GuardError, check
from servers.database.limits import Limits
from servers.database.results import QueryResult, SchemaResult, TableList
from servers.database.schema import describe, list_tables
from servers.protocol import Server

log = logging.getLogger("servers.database")

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def instructions(limits: Limits, backend: str) -> str:
    return (
        f"Read-only access to a {backend} database. Call list_tables to see the tables, get_schema for their columns "
        "and keys, then query_database with exactly one read-only statement (SELECT, WITH ... SELECT, VALUES, "
        f"EXPLAIN without ANALYZE{', TABLE, SHOW' if backend == 'postgresql' else ''}). Results hold at most "
        f"{limits.row_limit} rows and {limits.max_result_bytes} bytes (truncated=true and a note when there were more: "
        "add WHERE, ORDER BY and LIMIT, or select fewer columns); text over 65536 characters is cut; queries stop "
        f"after {limits.statement_timeout:g} s, and at most {limits.max_concurrent_queries} run at once (more are "
        "refused: retry after a moment). Writes, several statements and functions that reach outside are refused with "
        "the reason."
    )


def build_server(url: URL, limits: Limits | None = None) -> MCPServer[Database]:
    """A server for the database at `url` (already checked by connection.database_url)."""
    limits = limits or Limits()
    backend = "postgresql" if url.get_backend_name() == "postgresql" else "sqlite"

    @asynccontextmanager
    async def lifespan(_: MCPServer[Database]) -> AsyncIterator[Database]:
        database = Database(url, limits)
        log.info("serving %s read-only (row limit %d, timeout %g s, %d queries at once)", backend, limits.row_limit,
                 limits.statement_timeout, limits.max_concurrent_queries)  # fmt: skip
        try:
            yield database
        finally:
            await database.aclose()

    server: MCPServer[Database] = Server("database", instructions=instructions(limits, backend), lifespan=lifespan)

    @server.tool(annotations=READ_ONLY)
    async def query_database(
        query: Annotated[str, Field(description="exactly one read-only SQL statement")],
        ctx: Context[Database, Any],
    ) -> QueryResult:
        """Run one read-only SQL statement and return its rows (capped at the row limit, with a truncated flag).
        Dates are ISO 8601, decimals strings, bytes "base64:..." (or "<N bytes>" when large)."""
        database = ctx.request_context.lifespan_context
        log.debug("query: %s", query)
        try:
            statement = check(query, database.dialect, limits.max_query_length)
            return await database.query(statement)
        except (GuardError, QueryError) as error:
            log.info("query refused or failed: %s", error)
            raise ToolError(f"query refused: {error}" if isinstance(error, GuardError) else str(error)) from None

    @server.tool(annotations=READ_ONLY)
    async def get_schema(
        ctx: Context[Database, Any],
        table_name: Annotated[
            str | None, Field(description='one table or view ("name" or "schema.name"); omit for all')
        ] = None,
    ) -> SchemaResult:
        """Columns (name, type, nullability, default), primary key and foreign keys of one table, or of all."""
        database = ctx.request_context.lifespan_context
        try:
            with database.slot():
                return SchemaResult(tables=await describe(database.engine, table_name))
        except QueryError as error:
            raise ToolError(str(error)) from None

    @server.tool(name="list_tables", annotations=READ_ONLY)
    async def list_tables_tool(ctx: Context[Database, Any]) -> TableList:
        """The tables and views of the database, with their schema and type."""
        database = ctx.request_context.lifespan_context
        try:
            with database.slot():
                return TableList(tables=await list_tables(database.engine))
        except QueryError as error:
            raise ToolError(str(error)) from None

    return server
