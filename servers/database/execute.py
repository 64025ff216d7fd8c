"""The database one server serves, and running one guarded statement on it: at most `max_concurrent_queries` at once
(more are refused at once, never queued), SQLite queries in worker processes (`sqlite`), PostgreSQL queries on the
engine's pool (`postgres`) bounded by a client-side deadline past the server-side one, failures turned into
QueryError. Never imports `host`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from servers.database.connection import create_engine, dialect_of, sqlite_target
from servers.database.guard import Dialect, Statement
from servers.database.limits import Limits
from servers.database.pg_backends import StoppedBackends
from servers.database.postgres import run_postgresql
from servers.database.results import QueryResult
from servers.database.rows import TOO_DEEP, QueryError, Rows
from servers.database.sqlite import SqliteWorkers

__all__ = ["Database", "QueryError"]

log = logging.getLogger("servers.database")

CLIENT_GRACE_SECONDS = 1.0  # past the server-side timeout, stop the backend and answer


class Database:
    """The engine (schema tools, PostgreSQL queries), SQLite's query workers, and how many calls are running."""

    def __init__(self, url: URL, limits: Limits) -> None:
        self.limits = limits
        self.engine: AsyncEngine = create_engine(url, limits)
        self.dialect: Dialect = dialect_of(self.engine)
        self.workers = SqliteWorkers(sqlite_target(url), limits) if self.dialect == "sqlite" else None
        self.stopped = StoppedBackends(url)
        self.pg_settings: dict[str, str] | None = None
        self.running = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """A place among the calls running at once, or QueryError at once when all are taken."""
        allowed = self.limits.max_concurrent_queries
        if self.running >= allowed:
            seconds = self.limits.statement_timeout
            raise QueryError(f"the server is already running {allowed} queries, as many as it runs at once; try again "
                             f"when one has finished (each ends within {seconds:g} s)")  # fmt: skip
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1

    async def query(self, statement: Statement) -> QueryResult:
        """Run a statement the guard let through and return its first `row_limit` rows."""
        started = time.monotonic()
        with self.slot():
            if self.workers is not None:
                result = await self.workers.query(statement.text)
            else:
                result = await self._postgresql(statement)
        log.info("query (%s) returned %d rows%s in %.0f ms", statement.kind, result.row_count,
                 " (truncated)" * result.truncated, (time.monotonic() - started) * 1000)  # fmt: skip
        return result

    async def _postgresql(self, statement: Statement) -> QueryResult:
        limits = self.limits
        async with self.engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection
            pid = driver.get_server_pid()
            fetched: tuple[list[str], Rows] | None = None
            with anyio.move_on_after(limits.statement_timeout + CLIENT_GRACE_SECONDS) as deadline:
                try:
                    busy = self.running + await self.stopped.alive(driver)
                    if busy > limits.max_concurrent_queries:
                        raise QueryError(f"{busy - self.running} earlier queries still run in the database past their "
                                         "deadline (PostgreSQL cannot stop a query inside one long function call "
                                         "until the call returns); try again in a moment")  # fmt: skip
                    settings = await self._settings(driver)
                    fetched = await run_postgresql(connection, statement, limits, settings)
                except QueryError:
                    raise
                except RecursionError:  # SQLAlchemy's asyncpg codec decodes json and jsonb with json.loads
                    await connection.invalidate()
                    raise QueryError(TOO_DEEP) from None
                except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as error:
                    await connection.invalidate()  # unusable, or its session could not be reset: start a fresh one
                    raise QueryError(f"the query failed: {error}") from None
            if deadline.cancelled_caught:
                driver.terminate()  # the socket, at once: the backend may not read it for a long time
                await connection.invalidate()
                await self.stopped.stop(pid)
                raise QueryError(f"the query ran past its {limits.statement_timeout:g} s deadline and was stopped")
        assert fetched is not None  # the query returned, or its deadline or failure raised
        columns, rows = fetched
        return QueryResult(columns=columns, rows=rows.rows, row_count=len(rows.rows), truncated=rows.full,
                           note=rows.note)  # fmt: skip

    async def _settings(self, driver: Any) -> dict[str, str]:
        """work_mem and, where the role may set it, temp_file_limit: set for each query (checked once)."""
        if self.pg_settings is None:
            settings = {"work_mem": self.limits.work_mem}
            try:
                allowed = await driver.fetchval("SELECT has_parameter_privilege('temp_file_limit', 'SET')")
            except asyncpg.UndefinedFunctionError:  # before PostgreSQL 15: only a superuser may
                allowed = await driver.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            if allowed:
                settings["temp_file_limit"] = self.limits.temp_file_limit
            else:
                log.warning("this role may not set temp_file_limit, so a query's temporary files are bounded only by "
                            "the role's own setting: ALTER ROLE ... SET temp_file_limit = '%s' (README)",
                            self.limits.temp_file_limit)  # fmt: skip
            self.pg_settings = settings
        return self.pg_settings

    async def aclose(self) -> None:
        if self.workers is not None:
            await self.workers.aclose()
        await self.engine.dispose()
