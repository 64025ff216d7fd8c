"""Open the async SQLAlchemy engine for a URL and migrate its database to the newest schema (Alembic); for a
SQLite file also the one synchronous writer connection that all of the store's writes go through.

SQLite gets its directory created, WAL, foreign keys and a busy timeout; PostgreSQL a connection pool whose
callers queue for a connection (POOL_WAIT_SECONDS) instead of failing when a burst of turns holds them all.
Imports nothing from the host but storage.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///./data/mcpbot.db"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
POOL_SIZE = 10  # PostgreSQL connections kept open, and as many again opened in a burst
POOL_WAIT_SECONDS = 120.0  # measured: 1000 turns at once on 2 busy cores held every connection for 20-30 s


T = TypeVar("T")

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def open_engine(url: str = DEFAULT_URL) -> AsyncEngine:
    """An engine for `url` (`sqlite://` and `postgresql://` get their async drivers); for a SQLite file, its
    parent directory is created first. Raises ValueError for a database this store does not support."""
    parsed = make_url(url)
    if parsed.drivername in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[parsed.drivername])
    if parsed.drivername not in _ASYNC_DRIVERS.values():
        raise ValueError(f"{parsed.drivername!r} is not supported; use sqlite+aiosqlite:// or postgresql+asyncpg://")
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(
            parsed,
            pool_pre_ping=True,
            hide_parameters=True,
            pool_size=POOL_SIZE,
            max_overflow=POOL_SIZE,
            pool_timeout=POOL_WAIT_SECONDS,
        )
    database = _sqlite_file(parsed)
    if database is not None:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, hide_parameters=True, pool_timeout=POOL_WAIT_SECONDS)  # reads
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class SQLiteWriter:
    """One synchronous connection to a SQLite file for every write of the store, used by one thread at a time
    (the store's limiter). A write transaction runs in it whole, so its statements do not each wait for the event
    loop, and it is IMMEDIATE: it holds the write lock from its first statement, so a read that turns into a write
    never meets another process's write ("database is locked" at once, without the busy timeout)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @property
    def dialect(self) -> Dialect:
        return self._engine.dialect

    def run(self, work: Callable[[Connection], T]) -> T:
        with self._engine.begin() as connection:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
            return work(connection)

    def close(self) -> None:
        self._engine.dispose()


def open_sqlite_writer(url: str) -> SQLiteWriter | None:
    """The writer for a SQLite file URL; None for PostgreSQL and in-memory SQLite (written through the engine)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or _sqlite_file(parsed) is None:
        return None
    engine = create_engine(
        parsed.set(drivername="sqlite"),
        hide_parameters=True,
        pool_size=1,
        max_overflow=0,
        connect_args={"check_same_thread": False},  # one thread at a time, not always the same one
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return SQLiteWriter(engine)


def _sqlite_file(parsed: URL) -> str | None:
    """The file of a SQLite URL; None for an in-memory database or a `file:` URI."""
    database = parsed.database or ""
    return database if database and database != ":memory:" and not database.startswith("file:") else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable in WAL mode up to the last checkpointed commit
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


async def migrate(engine: AsyncEngine) -> None:
    """Upgrade the database to the newest revision; a no-op on an up-to-date one."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
