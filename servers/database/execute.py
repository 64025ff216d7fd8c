"""Running one guarded statement: on PostgreSQL in a READ ONLY transaction with a server-side timeout, always rolled
back and followed by a session reset; on SQLite under the connection's read-only authorizer and deadline. Fetches at
most row_limit + 1 rows, in batches sized so that what is held stays near the byte budget, and stops at the budget.
Never imports `host`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servers.database.connection import Limits, dialect_of, sqlite_policy
from servers.database.guard import Statement
from servers.database.render import TooDeep, render
from servers.database.results import QueryResult

log = logging.getLogger("servers.database")

CLIENT_GRACE_SECONDS = 5.0  # past the server-side timeout, give up on the connection itself
JSON_TYPES = frozenset({"json", "jsonb"})
TOO_DEEP = "a value is nested too deeply to send; select a part of it instead"
# After every PostgreSQL query, whatever the guard may have missed: session advisory locks, cursors, LISTEN, settings.
SESSION_RESET = "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL"


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


class Rows:
    """Rendered rows, collected until the row limit or the byte budget (their size as compact JSON) is reached."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.rows: list[list[Any]] = []
        self.size = 2  # the enclosing "[]"
        self.largest_fetched = 1  # characters and bytes in the largest row fetched so far, to size the next batch
        self.note: str | None = None  # why the result was cut short

    @property
    def full(self) -> bool:
        return self.note is not None

    def batch(self) -> int:
        """How many rows to fetch next: one first, then as many as the budget would hold if they were as large as the
        largest so far, so that huge values are fetched one row at a time."""
        left = self.limits.row_limit + 1 - len(self.rows)
        if not self.rows:
            return 1
        return max(1, min(left, (self.limits.max_result_bytes - self.size) // self.largest_fetched))

    def add(self, values: Sequence[Any], render_value: Callable[[Any, int], Any]) -> None:
        if self.full:
            return
        limit = self.limits.row_limit
        if len(self.rows) >= limit:
            self.note = f"the query has more than {limit} rows; showing the first {limit}: add WHERE or LIMIT"
            return
        try:
            self.largest_fetched = max(self.largest_fetched, sum(map(_fetched_size, values)))
            row = [render_value(value, index) for index, value in enumerate(values)]
            size = len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        except (TooDeep, RecursionError):
            raise QueryError(TOO_DEEP) from None
        budget = self.limits.max_result_bytes
        if self.size + size > budget:
            self.note = (f"the result reached the {budget}-byte limit after {len(self.rows)} rows: select fewer or "
                         "narrower columns, or add LIMIT")  # fmt: skip
            return
        self.rows.append(row)
        self.size += size


def _fetched_size(value: Any) -> int:
    """Roughly what a fetched value holds in memory: its length for text and bytes."""
    if isinstance(value, str | bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list | tuple):
        return 8 + sum(map(_fetched_size, value))
    return 8


async def _run_postgresql(connection: AsyncConnection, statement: Statement, limits: Limits) -> tuple[list[str], Rows]:
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
        cursor = await prepared.cursor()
        rows = Rows(limits)
        while not rows.full:
            wanted = rows.batch()
            records = await cursor.fetch(wanted)
            for record in records:
                rows.add(record, lambda value, index: _pg_value(value, json_columns[index]))
            if len(records) < wanted:
                break
    except asyncpg.PostgresError as error:
        raise QueryError(f"the database refused the query: {error} (SQLSTATE {error.sqlstate})") from None
    finally:
        await transaction.rollback()  # always: nothing a query did survives it
        await driver.execute(SESSION_RESET)  # nor anything session-level, such as an advisory lock
    return [attribute.name for attribute in attributes], rows


def _pg_value(value: Any, is_json: bool) -> Any:
    if is_json and isinstance(value, str):
        try:
            return render(json.loads(value))
        except RecursionError:
            raise TooDeep("a JSON value is nested too deeply") from None
        except ValueError:
            return render(value)
    return render(value)


async def _run_sqlite(connection: AsyncConnection, statement: Statement, limits: Limits) -> tuple[list[str], Rows]:
    policy = await sqlite_policy(connection)
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    policy.denied = None
    policy.deadline = time.monotonic() + limits.statement_timeout
    try:
        cursor = await driver.execute(statement.text)
        rows = Rows(limits)
        try:
            columns = [str(column[0]) for column in cursor.description or ()]
            while not rows.full:
                wanted = rows.batch()
                fetched = await cursor.fetchmany(wanted)
                for row in fetched:
                    rows.add(row, lambda value, _: render(value))
                if len(fetched) < wanted:
                    break
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
    return columns, rows
