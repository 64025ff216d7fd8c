"""Running one guarded statement on PostgreSQL: in a READ ONLY transaction with a server-side timeout, fetched through
a cursor in batches, always rolled back and followed by a session reset. Never imports `host`.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from servers.database.guard import Statement
from servers.database.limits import Limits
from servers.database.render import TooDeep, render
from servers.database.rows import QueryError, Rows

JSON_TYPES = frozenset({"json", "jsonb"})
# After every PostgreSQL query, whatever the guard may have missed: session advisory locks, cursors, LISTEN, settings.
SESSION_RESET = "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL"


async def run_postgresql(connection: AsyncConnection, statement: Statement, limits: Limits) -> tuple[list[str], Rows]:
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
