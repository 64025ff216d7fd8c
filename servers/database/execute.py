"""Running one guarded statement: on PostgreSQL in a READ ONLY transaction with a server-side timeout, always rolled
back; on SQLite under the connection's read-only authorizer and deadline. Fetches at most row_limit + 1 rows.
Never imports `host`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servers.database.connection import Limits, dialect_of, sqlite_policy
from servers.database.guard import Statement
from servers.database.render import render
from servers.database.results import QueryResult

log = logging.getLogger("servers.database")

CLIENT_GRACE_SECONDS = 5.0  # past the server-side timeout, give up on the connection itself
JSON_TYPES = frozenset({"json", "jsonb"})


class QueryError(Exception):
    """The database refused or failed the query; the message says why."""


async def run_query(engine: AsyncEngine, statement: Statement, limits: Limits) -> QueryResult:
    """Run a statement the guard let through and return its first `row_limit` rows."""
    started = time.monotonic()
    async with engine.connect() as connection:
        try:
            with anyio.fail_after(limits.statement_timeout + CLIENT_GRACE_SECONDS):
                if dialect_of(engine) == "postgresql":
                    columns, rows = await _run_postgresql(connection, statement, limits)
                else:
                    columns, rows = await _run_sqlite(connection, statement, limits)
        except TimeoutError:
            await connection.invalidate()
            raise QueryError(f"the query did not finish within {limits.statement_timeout:g} s") from None
        except QueryError:
            raise
        except (OSError, asyncpg.InterfaceError) as error:  # the connection may be unusable: start a fresh one
            await connection.invalidate()
            raise QueryError(f"the query failed: {error}") from None
    truncated = len(rows) > limits.row_limit
    rows = rows[: limits.row_limit]
    log.info("query (%s) returned %d rows%s in %.0f ms", statement.kind, len(rows), " (truncated)" * truncated,
             (time.monotonic() - started) * 1000)  # fmt: skip
    return QueryResult(columns=columns, rows=rows, row_count=len(rows), truncated=truncated)


async def _run_postgresql(
    connection: AsyncConnection, statement: Statement, limits: Limits
) -> tuple[list[str], list[list[Any]]]:
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # an asyncpg.Connection
    milliseconds = max(1, int(limits.statement_timeout * 1000))
    transaction = driver.transaction(readonly=True)  # BEGIN READ ONLY
    await transaction.start()
    try:
        await driver.execute(f"SET LOCAL statement_timeout = {milliseconds}")
        prepared = await driver.prepare(statement.text)  # the extended protocol refuses a second statement too
        attributes = prepared.get_attributes()
        json_columns = [attribute.type.name in JSON_TYPES for attribute in attributes]
        records = await (await prepared.cursor()).fetch(limits.row_limit + 1)
    except asyncpg.PostgresError as error:
        raise QueryError(f"the database refused the query: {error} (SQLSTATE {error.sqlstate})") from None
    finally:
        await transaction.rollback()  # always: nothing a query did survives it
    rows = [[_pg_value(value, json) for value, json in zip(record, json_columns, strict=True)] for record in records]
    return [attribute.name for attribute in attributes], rows


def _pg_value(value: Any, is_json: bool) -> Any:
    if is_json and isinstance(value, str):
        try:
            return render(json.loads(value))
        except ValueError:
            return value
    return render(value)


async def _run_sqlite(
    connection: AsyncConnection, statement: Statement, limits: Limits
) -> tuple[list[str], list[list[Any]]]:
    policy = await sqlite_policy(connection)
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    policy.denied = None
    policy.deadline = time.monotonic() + limits.statement_timeout
    try:
        cursor = await driver.execute(statement.text)
        try:
            fetched = await cursor.fetchmany(limits.row_limit + 1)
            columns = [str(column[0]) for column in cursor.description or ()]
        finally:
            await cursor.close()
    except sqlite3.Error as error:
        timed_out = policy.deadline is not None and time.monotonic() > policy.deadline
        if timed_out and "interrupt" in str(error):
            raise QueryError(
                f"the query ran past its {limits.statement_timeout:g} s deadline and was stopped"
            ) from None
        refused = f" (refused by the read-only authorizer: {policy.denied})" if policy.denied else ""
        raise QueryError(f"the database refused the query: {error}{refused}") from None
    finally:
        policy.deadline = None
        if driver.in_transaction:
            await driver.rollback()
    return columns, [[render(value) for value in row] for row in fetched]
