"""Database connections for the database server: URL checks, the async engine, and SQLite's read-only authorizer.

Owns what makes a connection read-only before any query runs: SQLite files opened with `mode=ro`, an authorizer that
allows reads only and a deadline; PostgreSQL sessions that default to read-only with a statement timeout.
Never imports `host`.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from servers.database.guard import Dialect, is_denied_function

log = logging.getLogger("servers.database")

ASYNC_DRIVERS: dict[str, str] = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}

# Read-only pragmas SQLAlchemy's inspector needs for get_schema; every other PRAGMA is refused by the authorizer.
SCHEMA_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "foreign_key_list", "index_list", "index_info", "index_xinfo"}
)
SQLITE_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
POLICY_KEY = "mcpbot_sqlite_policy"


@dataclass(frozen=True)
class Limits:
    """What every query is held to."""

    row_limit: int = 500
    statement_timeout: float = 10.0
    max_query_length: int = 20_000
    max_result_bytes: int = 4 * 1024 * 1024  # rows, as compact JSON, that one result may hold
    max_concurrent_queries: int = 4  # queries running at once; more are refused at once, never queued


def database_url(raw: str) -> URL:
    """Parse a SQLAlchemy URL, pick the async driver for SQLite and PostgreSQL, and open SQLite files read-only."""
    try:
        url = make_url(raw)
    except ArgumentError as error:
        raise ValueError(f"not a database URL: {error}") from None
    backend, driver = url.get_backend_name(), url.get_driver_name()
    if backend not in ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {backend!r}: this server enforces read-only on sqlite and postgresql")
    wanted = ASYNC_DRIVERS[backend]
    if driver != wanted:
        url = url.set(drivername=f"{backend}+{wanted}")
    return _sqlite_read_only(url) if backend == "sqlite" else url


def _sqlite_read_only(url: URL) -> URL:
    """`sqlite+aiosqlite:///x.db` becomes `sqlite+aiosqlite:///file:/abs/x.db?mode=ro&uri=true`."""
    database = url.database or ""
    if not database or database == ":memory:":
        return url
    if url.query.get("uri") == "true" and database.startswith("file:"):
        return url if "mode" in url.query else url.update_query_dict({"mode": "ro"})
    path = Path(database).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"no SQLite database file at {path}")
    return url.set(database="file:" + quote(str(path)), query={**url.query, "mode": "ro", "uri": "true"})


def dialect_of(engine: AsyncEngine) -> Dialect:
    return "postgresql" if engine.dialect.name == "postgresql" else "sqlite"


def create_engine(url: URL, limits: Limits) -> AsyncEngine:
    """The async engine; PostgreSQL sessions start read-only, with the statement timeout, standard strings."""
    if url.get_backend_name() != "postgresql":
        return create_async_engine(url)
    milliseconds = max(1, int(limits.statement_timeout * 1000))
    settings = {
        "default_transaction_read_only": "on",
        "statement_timeout": str(milliseconds),
        "idle_in_transaction_session_timeout": str(milliseconds * 2),
        "standard_conforming_strings": "on",  # the guard's tokenizer assumes it
        "application_name": "mcpbot-database",
    }
    connect_args = {"server_settings": settings, "command_timeout": limits.statement_timeout + 5}
    return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)


class SqlitePolicy:
    """The authorizer and progress handler of one SQLite connection: reads only, and a deadline while a query runs."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.denied: str | None = None  # what the authorizer last refused, for the error message

    def authorize(self, action: int, arg1: str | None, arg2: str | None, database: str | None, source: Any) -> int:
        if action in SQLITE_ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and not is_denied_function(arg2):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 is not None and arg1.lower() in SCHEMA_PRAGMAS:
            return sqlite3.SQLITE_OK
        self.denied = _describe(action, arg1, arg2)
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        """Called by SQLite every few thousand instructions; non-zero aborts the statement."""
        return 1 if self.deadline is not None and time.monotonic() > self.deadline else 0


_ACTIONS = (
    "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER CREATE_TEMP_VIEW CREATE_TRIGGER",
    "CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW",
    "DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE REINDEX ANALYZE",
    "CREATE_VTABLE DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE",
)
ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for line in _ACTIONS
    for name in line.split(" ")
    if hasattr(sqlite3, f"SQLITE_{name}")
}


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    detail = " ".join(part for part in (arg1, arg2) if part)
    return f"{ACTION_NAMES.get(action, str(action))} {detail}".strip()


async def sqlite_policy(connection: AsyncConnection) -> SqlitePolicy:
    """The policy of this pooled SQLite connection, installed on first use and kept for the connection's life."""
    raw = await connection.get_raw_connection()
    policy = raw.info.get(POLICY_KEY)
    if isinstance(policy, SqlitePolicy):
        return policy
    driver = raw.driver_connection
    assert driver is not None
    policy = SqlitePolicy()
    await driver.set_authorizer(policy.authorize)
    await driver.set_progress_handler(policy.progress, 1000)
    raw.info[POLICY_KEY] = policy
    return policy
