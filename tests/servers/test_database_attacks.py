"""Hostile statements against `python -m servers.database` over stdio, on a SQLite file and on a throw-away
PostgreSQL database: each must come back as a tool error, change no data, schema, sequence or file, and leave the
server answering the next good query.
"""

import hashlib
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from mcp import Client
from sqlalchemy.engine import make_url

from tests.postgres import throwaway_database
from tests.servers.conftest import stdio_params

pytestmark = pytest.mark.anyio

ITEMS = 20
HUGE = "SELECT '" + "x" * 25_000 + "'"

SQLITE_SETUP = f"""
CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC);
CREATE TABLE orders (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items(id), qty INTEGER);
CREATE INDEX orders_item ON orders(item_id);
CREATE VIEW cheap AS SELECT * FROM items WHERE price < 5;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {ITEMS})
INSERT INTO items (name, price) SELECT 'item ' || n, n * 1.25 FROM g;
INSERT INTO orders (item_id, qty) VALUES (1, 2), (2, 3);
"""

POSTGRESQL_SETUP = f"""
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10, 2));
CREATE TABLE orders (id serial PRIMARY KEY, item_id int REFERENCES items(id), qty int);
CREATE SEQUENCE counter;
CREATE VIEW cheap AS SELECT * FROM items WHERE price < 5;
INSERT INTO items (name, price) SELECT 'item ' || g, g * 1.25 FROM generate_series(1, {ITEMS}) g;
INSERT INTO orders (item_id, qty) VALUES (1, 2), (2, 3);
CREATE FUNCTION wipe() RETURNS int LANGUAGE sql AS $$ DELETE FROM items RETURNING 1 $$;
CREATE PROCEDURE evil() LANGUAGE sql AS $$ DELETE FROM items $$;
"""

# Refused by both backends. `{dir}` is the directory that holds the SQLite file (or a /tmp prefix on PostgreSQL).
COMMON = [
    "DROP TABLE items",
    "COMMIT; DROP TABLE items",
    "SELECT 1; DROP TABLE items",
    "; DROP TABLE items",
    "SELECT 1 /* ; */ ; DELETE FROM items",
    "SELECT '--'; DELETE FROM items",
    "SELECT 1 -- comment\n; DELETE FROM items",
    "SELECT 'a'';'; DELETE FROM items; --'",
    "DELETE FROM items",
    "delete from items where 1 = 1",
    "UPDATE items SET price = 0",
    "INSERT INTO items (name, price) VALUES ('evil', 1)",
    "WITH gone AS (DELETE FROM items RETURNING *) SELECT * FROM gone",
    "WITH x AS (SELECT 1) DELETE FROM items",
    "WITH up AS (UPDATE items SET price = 0 RETURNING *) SELECT count(*) FROM up",
    "CREATE TABLE evil (x int)",
    "CREATE TEMP TABLE evil AS SELECT * FROM items",
    "CREATE VIEW evil AS SELECT 1",
    "ALTER TABLE items ADD COLUMN evil int",
    "DROP VIEW cheap",
    "BEGIN",
    "ROLLBACK",
    "SAVEPOINT s",
    "EXPLAIN ANALYZE DELETE FROM items",
    "EXPLAIN DELETE FROM items",
    "SELECT * INTO newtable FROM items",
    "REPLACE INTO items (id, name, price) VALUES (1, 'evil', 0)",
    "VACUUM",
    "ANALYZE",
    HUGE,
    "",
    "-- only a comment",
    "SELECT 'never closed",
    "SELECT 1 /* never closed",
]

SQLITE_ONLY = [
    "ATTACH DATABASE '{dir}/attached.db' AS x",
    "attach '{dir}/attached2.db' as y",
    "DETACH DATABASE main",
    "VACUUM INTO '{dir}/copy.db'",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "SELECT load_extension('{dir}/evil')",
    "select LOAD_EXTENSION('x')",
    "SELECT writefile('{dir}/written.txt', 'x')",
    "INSERT OR REPLACE INTO items (id, name, price) VALUES (1, 'evil', 0)",
    "CREATE TRIGGER t AFTER INSERT ON items BEGIN DELETE FROM orders; END",
    "REINDEX",
    "SELECT 1 /* /* */ ; DELETE FROM items; */",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c",  # the deadline
    "SELECT * FROM items WHERE id = ?",
]

POSTGRESQL_ONLY = [
    "COPY items TO '{dir}_copy.csv'",
    "COPY items TO PROGRAM 'touch {dir}_program'",
    "COPY (SELECT 1) TO STDOUT",
    "COPY items FROM '/etc/hostname'",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "select \"pg_catalog\".\"set_config\"('statement_timeout', '0', false)",
    "SET statement_timeout = 0",
    "SET default_transaction_read_only = off",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "RESET ALL",
    "SELECT nextval('counter')",
    "SELECT NEXTVAL('counter')",
    "SELECT pg_catalog.nextval('counter')",
    "SELECT \"nextval\"('counter')",
    "SELECT \"NEXTVAL\"('counter')",
    "SELECT setval('counter', 100)",
    "SELECT pg_advisory_lock(1)",
    "SELECT Pg_Try_Advisory_Lock(1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT lo_import('/etc/hostname')",
    'SELECT "pg_catalog"."lo_from_bytea"(0, \'x\')',
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_catalog.pg_read_binary_file('/etc/hostname')",
    "SELECT pg_ls_dir('.')",
    "SELECT * FROM dblink('dbname=test', 'DELETE FROM items') AS t(x text)",
    "SELECT dblink_exec('dbname=test', 'DROP TABLE items')",
    "SELECT query_to_xml('DELETE FROM items RETURNING 1', true, true, '')",
    "SELECT txid_current()",
    "SELECT pg_terminate_backend(pg_backend_pid())",
    "SELECT pg_notify('chan', 'x')",
    "SELECT * FROM items FOR UPDATE",
    "SELECT * FROM items FOR SHARE",
    "SELECT * FROM items FOR NO KEY UPDATE",
    "CREATE TABLE evil AS SELECT * FROM items",
    "SELECT 1 INTO TEMP evil",
    "DO $$ BEGIN DELETE FROM items; END $$",
    "CALL evil()",
    "PREPARE p AS DELETE FROM items",
    "EXECUTE p",
    "DECLARE c CURSOR FOR SELECT * FROM items",
    "LOCK TABLE items IN ACCESS EXCLUSIVE MODE",
    "NOTIFY chan, 'x'",
    "LISTEN chan",
    "TRUNCATE items",
    "GRANT ALL ON items TO PUBLIC",
    "CREATE EXTENSION dblink",
    "MERGE INTO items USING orders ON items.id = orders.item_id WHEN MATCHED THEN DELETE",
    "EXPLAIN (ANALYZE) DELETE FROM items",
    "EXPLAIN ANALYZE SELECT * FROM items",
    "SELECT '\\'; DELETE FROM items; --'",
    "SELECT $a$ ; $a$; DELETE FROM items",
    "SELECT U&\"\\006Eextval\"('counter')",
    "SELECT wipe()",  # passes the guard; the read-only transaction refuses the DELETE inside it
    "SELECT pg_sleep(5)",  # allowed, and bounded by the server-side statement_timeout
    "SELECT count(*) FROM generate_series(1, 10000000000)",  # the timeout, again
    "SELECT 1 $$; DELETE FROM items; $$",  # one statement (a syntax error) to PostgreSQL
    "CHECKPOINT",
    "DISCARD ALL",
    "ALTER SYSTEM SET statement_timeout = 0",
]


# Statements that pass the guard on purpose: the database itself must stop them, and say so.
DATABASE_REASONS: dict[str, tuple[str, ...]] = {  # any one of these in the refusal; else "query refused"
    "SELECT wipe()": ("read-only transaction",),
    "SELECT pg_sleep(5)": ("statement timeout",),
    # PostgreSQL spills the series to a temporary file: whichever limit it reaches first stops it
    "SELECT count(*) FROM generate_series(1, 10000000000)": ("statement timeout", "temp_file_limit"),
    "SELECT 1 $$; DELETE FROM items; $$": ("syntax error",),
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c": ("deadline",),
}


def refused_as_expected(statement: str, result: Any) -> bool:
    return any(reason in text_of(result) for reason in DATABASE_REASONS.get(statement, ("query refused",)))


def text_of(result: Any) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


async def call(client: Client, query: str) -> Any:
    with anyio.fail_after(15):
        return await client.call_tool("query_database", {"query": query})


async def assert_healthy(client: Client, count: int = ITEMS) -> None:
    result = await call(client, "SELECT count(*) AS n FROM items")
    assert not result.is_error, text_of(result)
    assert result.structured_content["rows"] == [[count]]


def sqlite_snapshot(directory: Path, database: Path) -> dict[str, Any]:
    """Every file in the database's directory with its digest, and every table's rows and the schema."""
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())}
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        schema = connection.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        rows = {
            name: connection.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall()
            for (kind, name, _) in schema
            if kind == "table"
        }
    return {"files": files, "schema": schema, "rows": rows}


def make_sqlite_database(directory: Path) -> Path:
    database = directory / "shop.db"
    with closing(sqlite3.connect(database)) as connection:
        connection.executescript(SQLITE_SETUP)
        connection.commit()
    return database


async def test_sqlite_attacks(tmp_path: Path, subtests: Any) -> None:
    directory = tmp_path / "db"
    directory.mkdir()
    database = make_sqlite_database(directory)
    params = stdio_params("servers.database", "--url", f"sqlite+aiosqlite:///{database}", "--statement-timeout", "1")
    statements = [statement.replace("{dir}", str(directory)) for statement in COMMON + SQLITE_ONLY]
    assert len(statements) >= 30
    with anyio.fail_after(60):
        async with Client(params) as client:
            before = sqlite_snapshot(directory, database)
            for statement in statements:
                with subtests.test(msg=statement[:80]):
                    result = await call(client, statement)
                    assert result.is_error, f"not refused: {statement!r} -> {result.structured_content}"
                    assert refused_as_expected(statement, result), text_of(result)
                    assert sqlite_snapshot(directory, database) == before
                    await assert_healthy(client)


SNAPSHOT_QUERIES = {
    "relations": """SELECT n.nspname, c.relname, c.relkind, c.relpersistence FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
        ORDER BY 1, 2""",
    "columns": """SELECT table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema = 'public' ORDER BY 1, 2""",
    "functions": "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
    "WHERE n.nspname = 'public' ORDER BY 1",
    "items": "SELECT md5(string_agg(i::text, ',' ORDER BY id)), count(*) FROM items i",
    "orders": "SELECT md5(string_agg(o::text, ',' ORDER BY id)), count(*) FROM orders o",
    "counter": "SELECT last_value, is_called FROM counter",
    "items_id_seq": "SELECT last_value, is_called FROM items_id_seq",
    "large_objects": "SELECT count(*) FROM pg_largeobject_metadata",
    "advisory_locks": "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
    "prepared_xacts": "SELECT count(*) FROM pg_prepared_xacts",
    "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
    "grants": "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
    "WHERE table_schema = 'public' ORDER BY 1, 2",
    "auto_conf": "SELECT count(*) FROM pg_file_settings WHERE sourcefile LIKE '%postgresql.auto.conf'",
}


async def postgresql_snapshot(connection: Any, prefix: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        state: dict[str, Any] = {
            key: [tuple(row) for row in await connection.fetch(sql)] for key, sql in SNAPSHOT_QUERIES.items()
        }
    state["files"] = sorted(str(path) for path in Path(prefix).parent.glob(Path(prefix).name + "*"))
    return state


async def test_postgresql_attacks(postgres_url: str, subtests: Any) -> None:
    prefix = f"/tmp/mcpbot_dbtest_{uuid.uuid4().hex[:12]}"
    statements = [statement.replace("{dir}", prefix) for statement in COMMON + POSTGRESQL_ONLY]
    assert len(statements) >= 30
    async with throwaway_database(postgres_url, "mcpbot_dbtest", POSTGRESQL_SETUP) as url:
        # as the superuser on purpose (each layer must hold even then), which the server refuses without the flag
        params = stdio_params("servers.database", "--url", url, "--statement-timeout", "1", "--allow-privileged-role")
        observer = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        try:
            with anyio.fail_after(60):
                async with Client(params) as client:
                    before = await postgresql_snapshot(observer, prefix)
                    assert before["files"] == []
                    for statement in statements:
                        with subtests.test(msg=statement[:80]):
                            result = await call(client, statement)
                            assert result.is_error, f"not refused: {statement!r} -> {result.structured_content}"
                            assert refused_as_expected(statement, result), text_of(result)
                            assert await postgresql_snapshot(observer, prefix) == before
                            await assert_healthy(client)
                    settings = await call(client, "SELECT current_setting('statement_timeout') AS t, "
                                          "current_setting('default_transaction_read_only') AS r")  # fmt: skip
                    assert settings.structured_content["rows"] == [["1s", "on"]]
        finally:
            with anyio.fail_after(10):
                await observer.close()
