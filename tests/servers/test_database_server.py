"""The database server over stdio, Streamable HTTP and MCP Inspector, on SQLite and PostgreSQL: allowed queries work
(WITH, lower case, comments, large tables truncated fast, values rendered), the schema tools are right, the command line
refuses bad options, and the database layer alone stops writes when the guard is bypassed.
"""

import datetime as dt
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from servers.database.connection import database_url
from servers.database.execute import Database, QueryError
from servers.database.guard import Statement
from servers.database.limits import Limits
from servers.database.render import render
from tests.conftest import ROOT
from tests.postgres import read_only_role, throwaway_database
from tests.servers.conftest import inspector, stdio_params
from tests.servers.test_database_attacks import (
    ITEMS,
    POSTGRESQL_SETUP,
    make_sqlite_database,
    text_of,
)

pytestmark = pytest.mark.anyio

BIG = 100_000
ROW_LIMIT = 50

SQLITE_EXTRA = f"""
CREATE TABLE big (id INTEGER PRIMARY KEY, label TEXT);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {BIG})
INSERT INTO big SELECT n, 'row ' || n FROM g;
CREATE TABLE kinds (d DATE, amount NUMERIC, raw BLOB, note TEXT);
INSERT INTO kinds VALUES ('2024-02-29', '12.50', x'00ff10', 'semi; colon');
"""

POSTGRESQL_EXTRA = f"""
CREATE TABLE big (id int PRIMARY KEY, label text);
INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, {BIG}) g;
CREATE TABLE kinds (at timestamptz, d date, t time, amount numeric(30, 20), raw bytea, meta jsonb, tags text[],
                    id uuid, span interval, ratio double precision, note text);
INSERT INTO kinds VALUES ('2024-02-29 12:30:00+00', '2024-02-29', '13:14:15', 1234567890.12345678901234567890,
    '\\x00ff10', '{{"a": [1, 2]}}', '{{x,y}}', '12345678-1234-5678-1234-567812345678', '1 day 2 hours 3.5 seconds',
    'NaN', 'semi; colon');
"""


def sqlite_database(tmp_path: Path) -> Path:
    database = make_sqlite_database(tmp_path)
    with closing(sqlite3.connect(database)) as connection:
        connection.executescript(SQLITE_EXTRA)
        connection.commit()
    return database


async def call(client: Client, tool: str, **arguments: Any) -> Any:
    with anyio.fail_after(15):
        return await client.call_tool(tool, arguments)


async def rows(client: Client, query: str) -> list[list[Any]]:
    result = await call(client, "query_database", query=query)
    assert not result.is_error, text_of(result)
    found: list[list[Any]] = result.structured_content["rows"]
    return found


async def exercise(client: Client, backend: str) -> None:
    """The allowed cases and the schema tools, the same on both backends."""
    with anyio.fail_after(10):
        listed = await client.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == {"query_database", "get_schema", "list_tables"}
    for tool in tools.values():
        assert tool.annotations and tool.annotations.read_only_hint and tool.annotations.open_world_hint is False
    assert "read-only" in (client.instructions or "").lower()

    assert await rows(client, "WITH cheap AS (SELECT * FROM items WHERE price < 3) SELECT count(*) FROM cheap") == [[2]]
    assert await rows(client, "select name from items where id = 1") == [["item 1"]]
    assert await rows(client, "-- comment\nselect id from items where id = 2") == [[2]]
    assert await rows(client, "/* c */ SELECT id FROM items WHERE id = 3 /* trailing */;") == [[3]]
    assert await rows(client, "SELECT 'DROP TABLE x; --' AS s") == [["DROP TABLE x; --"]]
    assert await rows(client, "SELECT count(*) FROM items WHERE name <> 'a'';DELETE FROM items;--'") == [[ITEMS]]
    assert await rows(client, "SELECT note FROM kinds WHERE note LIKE '%;%'") == [["semi; colon"]]
    assert await rows(client, "EXPLAIN SELECT * FROM items")

    started = time.monotonic()
    result = await call(client, "query_database", query="SELECT * FROM big")
    elapsed = time.monotonic() - started
    assert result.structured_content["truncated"] is True
    assert result.structured_content["row_count"] == ROW_LIMIT == len(result.structured_content["rows"])
    assert result.structured_content["columns"] == ["id", "label"]
    assert elapsed < 2, f"a truncated read of {BIG} rows took {elapsed:.2f} s"
    whole = await call(client, "query_database", query="SELECT count(*) FROM big")
    assert whole.structured_content == {"columns": ["count(*)" if backend == "sqlite" else "count"],
                                        "rows": [[BIG]], "row_count": 1, "truncated": False, "note": None}  # fmt: skip

    tables = (await call(client, "list_tables")).structured_content["tables"]
    named = {table["name"]: table for table in tables}
    assert {"items", "orders", "big", "kinds", "cheap"} <= set(named)
    assert named["cheap"]["type"] == "view" and named["items"]["type"] == "table"

    schema = (await call(client, "get_schema", table_name="orders")).structured_content["tables"]
    [orders] = schema
    assert orders["primary_key"] == ["id"]
    assert [column["name"] for column in orders["columns"]] == ["id", "item_id", "qty"]
    assert orders["foreign_keys"] == [
        {"columns": ["item_id"], "references_schema": None, "references_table": "items", "references_columns": ["id"]}
    ]
    items = (await call(client, "get_schema", table_name="items")).structured_content["tables"][0]
    name_column = next(column for column in items["columns"] if column["name"] == "name")
    assert name_column["nullable"] is False and "TEXT" in name_column["type"].upper()
    everything = (await call(client, "get_schema")).structured_content["tables"]
    assert {table["name"] for table in everything} == set(named)
    missing = await call(client, "get_schema", table_name="no_such_table")
    assert missing.is_error and "no_such_table" in text_of(missing)


async def test_sqlite_over_stdio(tmp_path: Path) -> None:
    database = sqlite_database(tmp_path)
    params = stdio_params("servers.database", "--url", f"sqlite:///{database}", "--row-limit", str(ROW_LIMIT))
    with anyio.fail_after(60):
        async with Client(params) as client:
            await exercise(client, "sqlite")
            [[day, amount, raw]] = await rows(client, "SELECT d, amount, raw FROM kinds")
            assert (day, amount, raw) == ("2024-02-29", 12.5, "base64:AP8Q")
            assert await rows(client, "SELECT zeroblob(2000)") == [["<2000 bytes>"]]


async def test_postgresql_over_stdio(postgres_url: str) -> None:
    async with (
        throwaway_database(postgres_url, "mcpbot_dbtest", POSTGRESQL_SETUP + POSTGRESQL_EXTRA) as url,
        read_only_role(url) as reader,
    ):
        params = stdio_params("servers.database", "--url", reader, "--row-limit", str(ROW_LIMIT))
        with anyio.fail_after(60):
            async with Client(params) as client:
                await exercise(client, "postgresql")
                [values] = await rows(client, "SELECT * FROM kinds")
                assert values == [
                    "2024-02-29T12:30:00+00:00",
                    "2024-02-29",
                    "13:14:15",
                    "1234567890.12345678901234567890",
                    "base64:AP8Q",
                    {"a": [1, 2]},
                    ["x", "y"],
                    "12345678-1234-5678-1234-567812345678",
                    "P1DT2H3.5S",
                    "NaN",
                    "semi; colon",
                ]
                assert await rows(client, "TABLE orders") == [[1, 1, 2], [2, 2, 3]]
                assert await rows(client, "SHOW statement_timeout") == [["10s"]]
                assert await rows(client, "SELECT 1 /* nested /* comment */ ; DELETE FROM items; */") == [[1]]
                assert await rows(client, "SELECT $$ ; DROP TABLE items; $$ AS s") == [[" ; DROP TABLE items; "]]


async def test_over_streamable_http(tmp_path: Path, http_server: Any) -> None:
    database = sqlite_database(tmp_path)
    url = http_server("servers.database", "--url", f"sqlite+aiosqlite:///{database}")
    with anyio.fail_after(30):
        async with Client(url) as client:
            assert {tool.name for tool in (await client.list_tools()).tools} == {
                "query_database",
                "get_schema",
                "list_tables",
            }
            assert await rows(client, "SELECT count(*) AS n FROM items") == [[ITEMS]]
            refused = await call(client, "query_database", query="DELETE FROM items")
            assert refused.is_error and "DELETE" in text_of(refused)
            assert await rows(client, "SELECT count(*) AS n FROM items") == [[ITEMS]]


def test_under_mcp_inspector(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    command = [sys.executable, "-m", "servers.database", "--url", f"sqlite+aiosqlite:///{database}"]
    listed = inspector(tmp_path, *command, "--method", "tools/list")
    assert {tool["name"] for tool in listed["tools"]} == {"query_database", "get_schema", "list_tables"}
    called = inspector(
        tmp_path,
        *command,
        "--method",
        "tools/call",
        "--tool-name",
        "query_database",
        "--tool-arg",
        "query=SELECT name FROM items WHERE id = 1",
    )
    assert called["structuredContent"]["rows"] == [["item 1"]]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "servers.database", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_command_line_refuses_missing_or_bad_urls(tmp_path: Path) -> None:
    missing = run_cli()
    assert missing.returncode == 2 and "MCP_DATABASE_URL" in missing.stderr and not missing.stdout
    no_file = run_cli("--url", f"sqlite:///{tmp_path}/absent.db")
    assert no_file.returncode == 2 and "no SQLite database file" in no_file.stderr
    other = run_cli(env={"MCP_DATABASE_URL": "mysql://localhost/x"})
    assert other.returncode == 2 and "unsupported database 'mysql'" in other.stderr
    bad_limit = run_cli("--url", "sqlite://", "--row-limit", "0")
    assert bad_limit.returncode == 2 and "row-limit" in bad_limit.stderr


def test_urls_pick_async_drivers_and_open_sqlite_read_only(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    url = database_url(f"sqlite:///{database}")
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == f"file:{database}" and dict(url.query) == {"mode": "ro", "uri": "true"}
    assert database_url("postgresql://reader@db/shop").drivername == "postgresql+asyncpg"


def test_rendering() -> None:
    assert render(dt.datetime(2024, 2, 29, 1, 2, 3, tzinfo=dt.UTC)) == "2024-02-29T01:02:03+00:00"
    assert render(dt.date(2024, 2, 29)) == "2024-02-29"
    assert render(dt.time(1, 2, 3)) == "01:02:03"
    assert render(Decimal("0.10000000000000000000001")) == "0.10000000000000000000001"
    assert render(b"\x00\x01") == "base64:AAE="
    assert render(b"x" * 5000) == "<5000 bytes>"
    assert render(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"
    assert render(dt.timedelta(days=-1)) == "-P1D"
    assert render(dt.timedelta(0)) == "PT0S"
    assert render(dt.timedelta(minutes=1, microseconds=500)) == "PT1M0.0005S"
    assert render(float("inf")) == "Infinity"
    assert render({"a": [Decimal("1.5"), None]}) == {"a": ["1.5", None]}


# Defence in depth: with the guard bypassed (a Statement built by hand), the database layer still refuses writes.
SQLITE_BYPASS = [
    "INSERT INTO items (name, price) VALUES ('evil', 1)",
    "UPDATE items SET price = 0",
    "DELETE FROM items",
    "REPLACE INTO items (id, name, price) VALUES (1, 'evil', 0)",
    "CREATE TABLE evil (x int)",
    "DROP TABLE orders",
    "ATTACH DATABASE '{dir}/attached.db' AS x",
    "VACUUM INTO '{dir}/copy.db'",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = DELETE",
    "SELECT load_extension('x')",
    "BEGIN",
    "SELECT 1; DELETE FROM items",
]
POSTGRESQL_BYPASS = [
    "INSERT INTO items (name, price) VALUES ('evil', 1)",
    "UPDATE items SET price = 0",
    "DELETE FROM items",
    "CREATE TABLE evil (x int)",
    "DROP TABLE orders",
    "SELECT nextval('counter')",
    "SELECT setval('counter', 5)",
    "SELECT wipe()",
    "SELECT * FROM items FOR UPDATE",
    "SELECT * INTO evil FROM items",
    "WITH gone AS (DELETE FROM items RETURNING *) SELECT * FROM gone",
    "SELECT 1; DELETE FROM items",
]


async def bypass(url: str, statements: list[str], count_query: str) -> None:
    database = Database(database_url(url), Limits(row_limit=10, statement_timeout=5))
    try:
        for text in statements:
            with anyio.fail_after(15), pytest.raises(QueryError):
                await database.query(Statement(text=text, kind="select"))
            with anyio.fail_after(15):
                counted = await database.query(Statement(text=count_query, kind="select"))
            assert counted.rows == [[ITEMS]], text
    finally:
        with anyio.fail_after(15):
            await database.aclose()


def directory_state(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


async def test_sqlite_database_layer_refuses_without_the_guard(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    before = directory_state(tmp_path)
    statements = [text.replace("{dir}", str(tmp_path)) for text in SQLITE_BYPASS]
    await bypass(f"sqlite:///{database}", statements, "SELECT count(*) FROM items")
    assert directory_state(tmp_path) == before


async def test_postgresql_database_layer_refuses_without_the_guard(postgres_url: str) -> None:
    async with throwaway_database(postgres_url, "mcpbot_dbtest", POSTGRESQL_SETUP) as url:
        await bypass(url, POSTGRESQL_BYPASS, "SELECT count(*) FROM items")
        database = Database(database_url(url), Limits(statement_timeout=5))
        try:
            changes = (
                "SELECT set_config('statement_timeout', '0', false),"
                " set_config('default_transaction_read_only', 'off', false)"
            )
            settings = "SELECT current_setting('statement_timeout'), current_setting('default_transaction_read_only')"
            with anyio.fail_after(15):  # settings changed inside the transaction die with its rollback
                changed = await database.query(Statement(changes, "select"))
                after = await database.query(Statement(settings, "select"))
            assert changed.rows == [["0", "off"]] and after.rows == [["5s", "on"]]
        finally:
            with anyio.fail_after(15):
                await database.aclose()
