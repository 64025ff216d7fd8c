"""Database connections for the database server: URL checks, the async engine, and the read-only policy installed on
the engine's SQLite connections (which the schema tools use; queries run in `sqlite_worker`).

Owns what makes a connection read-only before any query runs: SQLite files opened with `mode=ro` and the authorizer
of `sqlite_policy`; PostgreSQL sessions that default to read-only with a statement timeout. Never imports `host`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, urlencode

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from servers.database.guard import Dialect
from servers.database.limits import Limits
from servers.database.sqlite_policy import SqlitePolicy

log = logging.getLogger("servers.database")

ASYNC_DRIVERS: dict[str, str] = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}

POLICY_KEY = "mcpbot_sqlite_policy"


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


def sqlite_target(url: URL) -> str:
    """What `sqlite3.connect(..., uri=True)` opens for a URL from database_url: the read-only file URI, or memory."""
    database = url.database or ""
    if not database or database == ":memory:":
        return ":memory:"
    options = {key: value for key, value in url.query.items() if key != "uri" and isinstance(value, str)}
    return f"{database}?{urlencode(options)}" if options else database


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
    # one connection per call the server lets run at once (its gate refuses more): never a queue for the pool
    pool = {"pool_size": limits.max_concurrent_queries, "max_overflow": 0, "pool_timeout": 5}
    return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)


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
