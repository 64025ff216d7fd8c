"""Running one guarded statement on either backend (`postgres`, `sqlite`), bounded by a client-side deadline past
the server-side one, with failures turned into QueryError. Never imports `host`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from servers.database.connection import Limits, dialect_of
from servers.database.guard import Statement
from servers.database.postgres import run_postgresql
from servers.database.results import QueryResult
from servers.database.rows import TOO_DEEP, QueryError
from servers.database.sqlite import run_sqlite

__all__ = ["QueryError", "run_query", "warn_if_superuser"]

log = logging.getLogger("servers.database")

CLIENT_GRACE_SECONDS = 5.0  # past the server-side timeout, give up on the connection itself


async def run_query(engine: AsyncEngine, statement: Statement, limits: Limits) -> QueryResult:
    """Run a statement the guard let through and return its first `row_limit` rows."""
    started = time.monotonic()
    async with engine.connect() as connection:
        try:
            with anyio.fail_after(limits.statement_timeout + CLIENT_GRACE_SECONDS):
                if dialect_of(engine) == "postgresql":
                    columns, rows = await run_postgresql(connection, statement, limits)
                else:
                    columns, rows = await run_sqlite(connection, statement, limits)
        except TimeoutError:
            await connection.invalidate()
            raise QueryError(f"the query did not finish within {limits.statement_timeout:g} s") from None
        except QueryError:
            raise
        except RecursionError:  # asyncpg decodes json and jsonb with json.loads, which recurses
            await connection.invalidate()
            raise QueryError(TOO_DEEP) from None
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as error:
            await connection.invalidate()  # unusable, or its session could not be reset: start a fresh one
            raise QueryError(f"the query failed: {error}") from None
    log.info("query (%s) returned %d rows%s in %.0f ms", statement.kind, len(rows.rows), " (truncated)" * rows.full,
             (time.monotonic() - started) * 1000)  # fmt: skip
    return QueryResult(columns=columns, rows=rows.rows, row_count=len(rows.rows), truncated=rows.full, note=rows.note)


async def warn_if_superuser(engine: AsyncEngine) -> None:
    """Log a warning when a PostgreSQL server is reached as a superuser, who can do more than any guard can stop."""
    if dialect_of(engine) != "postgresql":
        return
    try:
        with anyio.fail_after(CLIENT_GRACE_SECONDS):
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                superuser = await driver.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                await connection.rollback()
    except (TimeoutError, OSError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        log.warning("could not check the database role: %s", error)  # the server starts anyway, as before
        return
    if superuser:
        log.warning("connected to PostgreSQL as a superuser: use a read-only role instead (README, 'A read-only role "
                    "is your first line of defence')")  # fmt: skip
