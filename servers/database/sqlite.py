"""Running one guarded statement on SQLite, under the connection's read-only authorizer and deadline. Never imports
`host`.
"""

from __future__ import annotations

import sqlite3
import time

from sqlalchemy.ext.asyncio import AsyncConnection

from servers.database.connection import Limits, sqlite_policy
from servers.database.guard import Statement
from servers.database.render import render
from servers.database.rows import QueryError, Rows


async def run_sqlite(connection: AsyncConnection, statement: Statement, limits: Limits) -> tuple[list[str], Rows]:
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
