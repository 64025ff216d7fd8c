"""Transactions: the one way the store's parts run statements. A write runs as one transaction (on a SQLite file in
the store's one writer thread, one at a time; on PostgreSQL on a pooled connection); a read on a pooled connection.
Every SQLAlchemy, driver and Alembic error becomes one StorageError saying what failed. Imports only errors and
storage's database module."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import anyio
from alembic.util import CommandError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from host.errors import StorageError
from host.storage.database import SQLiteWriter

T = TypeVar("T")


class Transactions:
    def __init__(self, engine: AsyncEngine, writer: SQLiteWriter | None) -> None:
        self.engine = engine
        self.writer = writer
        self._writer_turn = anyio.CapacityLimiter(1)

    async def write(self, action: str, work: Callable[[Connection], T]) -> T:
        """Run `work` as one write transaction. On a SQLite file in the one writer thread, one at a time: the
        transaction's statements run there without a trip through the event loop each, and a burst of writers
        queues here instead of waiting out SQLite's busy timeout ("database is locked")."""
        with translated(action):
            if self.writer is None:
                async with self.engine.begin() as connection:
                    return await connection.run_sync(work)
            return await anyio.to_thread.run_sync(self.writer.run, work, limiter=self._writer_turn)

    async def read(self, action: str, work: Callable[[Connection], T]) -> T:
        """Run `work` on a pooled connection, for reads."""
        with translated(action):
            async with self.engine.connect() as connection:
                return await connection.run_sync(work)


@contextmanager
def translated(action: str) -> Iterator[None]:
    """SQLAlchemy, driver and Alembic errors become one StorageError saying what failed (the cause is chained).

    The block runs shielded from cancellation: a call cancelled halfway can leave an aiosqlite connection that
    never finishes closing (and a process that never exits). The calls are short; a cancelled caller sees its
    cancellation as soon as the call is done."""
    try:
        with anyio.CancelScope(shield=True):
            yield
    except (SQLAlchemyError, OSError, CommandError, ValueError, ImportError) as exc:
        detail = exc.orig if isinstance(exc, DBAPIError) else exc
        reason = (str(detail).strip().splitlines() or [type(detail).__name__])[0][:300]
        raise StorageError(f"could not {action}: {reason}") from exc
