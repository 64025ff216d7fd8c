"""Running one guarded statement on PostgreSQL: in a READ ONLY transaction with a server-side timeout and the
per-query settings (work_mem, temp_file_limit), its values cut in the database (`pg_cut`), fetched through a cursor in
batches, always rolled back and followed by a session reset. Never imports `host`.
"""

from __future__ import annotations

from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from servers.database.guard import Statement
from servers.database.limits import Limits
from servers.database.pg_cut import WRAPPABLE_KINDS, Column, assemble, plan, render_whole, wrap
from servers.database.render import TooDeep
from servers.database.rows import TOO_DEEP, QueryError, Rows

# After every PostgreSQL query, whatever the guard may have missed: session advisory locks, cursors, LISTEN, settings.
SESSION_RESET = "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL"
MAX_ERROR_CHARS = 2000


async def run_postgresql(
    connection: AsyncConnection, statement: Statement, limits: Limits, settings: dict[str, str]
) -> tuple[list[str], Rows]:
    """Run the statement and fetch its rows; `settings` are set for this transaction only (work_mem, ...)."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection  # an asyncpg.Connection
    milliseconds = max(1, int(limits.statement_timeout * 1000))
    transaction = driver.transaction(readonly=True)  # BEGIN READ ONLY
    await transaction.start()
    try:
        await driver.execute(f"SET LOCAL statement_timeout = {milliseconds}")
        for name, value in settings.items():
            await driver.execute("SELECT set_config($1, $2, true)", name, value)
        prepared = await driver.prepare(statement.text)  # the extended protocol refuses a second statement too
        columns = plan(prepared.get_attributes())
        if statement.kind in WRAPPABLE_KINDS and columns:
            prepared = await driver.prepare(wrap(statement.text, columns, limits.max_result_bytes))
        cursor = await prepared.cursor()
        rows = Rows(limits)
        while not rows.full:
            wanted = rows.batch()
            records = await cursor.fetch(wanted)
            for record in records:
                rows.add(_shown(record, columns, statement.kind, limits), lambda value, _: value)
            if len(records) < wanted:
                break
    except asyncpg.PostgresError as error:
        message = str(error)  # it may quote a value of the query, as large as the value
        if len(message) > MAX_ERROR_CHARS:
            message = f"{message[:MAX_ERROR_CHARS]}[... {len(message) - MAX_ERROR_CHARS} more characters]"
        raise QueryError(
            f"the database refused the query: {message} (SQLSTATE {getattr(error, 'sqlstate', '?')})"
        ) from None
    finally:
        await transaction.rollback()  # always: nothing a query did survives it
        await driver.execute(SESSION_RESET)  # nor anything session-level, such as an advisory lock
    return [column.name for column in columns], rows


def _shown(record: Any, columns: list[Column], kind: str, limits: Limits) -> list[Any]:
    try:
        if kind in WRAPPABLE_KINDS:
            return assemble(record, columns, limits.max_result_bytes)
        return [render_whole(value, column.is_json) for value, column in zip(record, columns, strict=True)]
    except TooDeep:
        raise QueryError(TOO_DEEP) from None
