"""What one query may leave behind or send back: no session state survives a PostgreSQL call (even with the guard
bypassed), results stop at the byte budget, long values are cut, and values nested too deeply are a clear error. Runs
queries in-process (`Database.query`) against SQLite in memory and this machine's PostgreSQL (database `test`).
"""

import json
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from servers.database.__main__ import parser
from servers.database.connection import database_url
from servers.database.execute import Database, QueryError
from servers.database.guard import Statement
from servers.database.limits import Limits
from servers.database.render import MAX_TEXT_CHARS, TooDeep, render

pytestmark = pytest.mark.anyio

BUDGET = 256 * 1024
SLACK = 1024


async def database_for(url: str, limits: Limits) -> AsyncIterator[Database]:
    database = Database(database_url(url), limits)
    try:
        yield database
    finally:
        with anyio.fail_after(10):
            await database.aclose()


@pytest.fixture
async def postgresql(postgres_url: str) -> AsyncIterator[Database]:
    async for database in database_for(postgres_url, Limits(statement_timeout=10, max_result_bytes=BUDGET)):
        yield database


@pytest.fixture
async def sqlite() -> AsyncIterator[Database]:
    async for database in database_for("sqlite+aiosqlite://", Limits(statement_timeout=10, max_result_bytes=BUDGET)):
        yield database


async def query(database: Database, sql: str, seconds: float = 10) -> Any:
    with anyio.fail_after(seconds):
        return await database.query(Statement(sql, "select"))  # the guard bypassed on purpose


async def test_no_session_advisory_lock_survives_a_postgresql_call(postgres_url: str, postgresql: Database) -> None:
    key = random.randint(1, 2**31 - 1)
    locked = await query(postgresql, f"SELECT pg_advisory_lock({key}), pg_advisory_lock_shared({key} + 1)")
    assert locked.rows == [[None, None]]
    observer = await asyncpg.connect(make_url(postgres_url).set(drivername="postgresql").render_as_string(False))
    try:
        with anyio.fail_after(10):
            held = await observer.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid IN ($1, $2)", key, key + 1
            )
            assert held == 0
            assert await observer.fetchval("SELECT pg_try_advisory_lock($1)", key) is True
            await observer.execute("SELECT pg_advisory_unlock_all()")
    finally:
        with anyio.fail_after(10):
            await observer.close()
    assert (await query(postgresql, "SELECT current_setting('default_transaction_read_only')")).rows == [["on"]]


def assert_bounded(result: Any, started: float) -> None:
    assert result.truncated is True and "byte limit" in (result.note or "")
    assert 0 < result.row_count == len(result.rows) < 200
    assert len(result.model_dump_json().encode()) < BUDGET + SLACK
    assert time.monotonic() - started < 5


async def test_postgresql_results_stop_at_the_byte_budget(postgresql: Database) -> None:
    started = time.monotonic()
    result = await query(postgresql, "SELECT repeat('x', 10000000) AS big FROM generate_series(1, 200)")
    assert_bounded(result, started)
    assert result.rows[0][0] == "x" * MAX_TEXT_CHARS + f"[... {10_000_000 - MAX_TEXT_CHARS} more characters]"
    small = await query(postgresql, "SELECT g, repeat('y', 1000) FROM generate_series(1, 400) g")
    assert small.truncated and BUDGET // 1020 < small.row_count == len(small.rows) < BUDGET // 1000  # rows of ~1 KB


async def test_sqlite_results_stop_at_the_byte_budget(sqlite: Database) -> None:
    started = time.monotonic()
    result = await query(
        sqlite,
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n<100) "
        "SELECT n, printf('%.*c', 10000000, 'x') FROM r",
    )
    assert_bounded(result, started)
    assert result.rows[0][0] == 1 and result.rows[0][1].endswith(f"[... {10_000_000 - MAX_TEXT_CHARS} more characters]")
    async for limited in database_for("sqlite+aiosqlite://", Limits(row_limit=2)):
        rows_limit = await limited.query(Statement("VALUES (1), (2), (3)", "values"))
    assert rows_limit.truncated and rows_limit.rows == [[1], [2]] and "more than 2 rows" in (rows_limit.note or "")


async def test_values_nested_too_deeply_are_a_clear_error(postgresql: Database) -> None:
    with pytest.raises(QueryError, match="nested too deeply"):
        await query(postgresql, "SELECT (repeat('[', 3000) || repeat(']', 3000))::jsonb")
    with pytest.raises(QueryError, match="nested too deeply"):
        await query(postgresql, "SELECT (repeat('[', 200) || repeat(']', 200))::json")
    assert (await query(postgresql, "SELECT '[[[1]]]'::jsonb")).rows == [[[[[1]]]]]
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(TooDeep):
        render(nested)


def test_long_text_is_cut_and_the_budget_is_an_option() -> None:
    assert render("x" * 10) == "x" * 10
    assert render("é" * (MAX_TEXT_CHARS + 5)) == "é" * MAX_TEXT_CHARS + "[... 5 more characters]"
    assert render({"k": ["z" * (MAX_TEXT_CHARS + 1)]}) == {"k": ["z" * MAX_TEXT_CHARS + "[... 1 more characters]"]}
    assert parser().parse_args(["--max-result-bytes", "1000"]).max_result_bytes == 1000
    assert parser().parse_args([]).max_result_bytes == 4 * 1024 * 1024
    json.dumps(render(float("nan")))
