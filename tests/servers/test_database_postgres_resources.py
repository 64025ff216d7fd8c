"""What one caller can make the database server spend on PostgreSQL, over MCP stdio against the real server process and
a throw-away database: a query stuck inside one function call is answered at its deadline, its backend cancelled and
terminated and counted until it is gone (new queries refused meanwhile); huge values are cut in the database before
they are fetched; work_mem and temp_file_limit are set for each query.
"""

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from mcp import Client
from sqlalchemy.engine import make_url

from servers.database.pg_backends import StoppedBackends
from servers.database.render import MAX_TEXT_CHARS
from tests.conftest import ROOT
from tests.postgres import read_only_role, throwaway_database
from tests.servers.conftest import stdio_params
from tests.servers.test_database_attacks import POSTGRESQL_SETUP, text_of
from tests.servers.test_database_sqlite_resources import peak_memory, processes_with

pytestmark = pytest.mark.anyio

PRIVILEGED = ("--allow-privileged-role",)  # tests connect as this machine's superuser, which the server refuses

# One strpos() call of several seconds: PostgreSQL checks for cancel and terminate only when it returns. It reads
# `items`, so its backend holds a lock on the table while it runs.
STUCK = "SELECT strpos(repeat('a', 2500000) || name, 'b' || repeat('a', 10000)) FROM items LIMIT 1"


@pytest.fixture
async def database(postgres_url: str) -> AsyncIterator[str]:
    async with throwaway_database(postgres_url, "mcpbot_dbres", POSTGRESQL_SETUP) as url:
        yield url


def server(url: str, *options: str) -> Any:
    return stdio_params("servers.database", "--url", url, *options)


def as_superuser(url: str, *options: str) -> Any:
    """The server as this machine's superuser, which a test of the layers below the role needs."""
    return server(url, *PRIVILEGED, *options)


async def call(client: Client, query: str, seconds: float = 15) -> Any:
    with anyio.fail_after(seconds):
        return await client.call_tool("query_database", {"query": query})


async def observer(url: str) -> Any:
    return await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False), timeout=10)


async def our_active_backends(connection: Any) -> int:
    count: int = await connection.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'mcpbot-database' AND state = 'active'"
    )
    return count


async def test_a_stuck_query_is_stopped_at_its_deadline_and_counted_until_it_is_gone(database: str) -> None:
    watcher = await observer(database)
    try:
        async with Client(
            as_superuser(database, "--statement-timeout", "1", "--max-concurrent-queries", "2")
        ) as client:
            for _ in range(2):
                started = time.monotonic()
                stuck = await call(client, STUCK)
                elapsed = time.monotonic() - started
                assert stuck.is_error and "ran past its 1 s deadline and was stopped" in text_of(stuck)
                assert elapsed < 4, f"answered after {elapsed:.1f} s against a 1 s deadline"
            refused = await call(client, "SELECT 1")
            assert refused.is_error and "earlier queries still run in the database past their deadline" in text_of(
                refused
            )
            assert await our_active_backends(watcher) <= 2  # never more than the cap
            with anyio.fail_after(60):  # the stopped backends end when strpos returns, and release their locks
                await watcher.execute("SET lock_timeout = '50s'; LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
                await watcher.execute("COMMIT")
            counted = await call(client, "SELECT count(*) FROM items")
            assert not counted.is_error and counted.structured_content["rows"] == [[20]]
    finally:
        with anyio.fail_after(10):
            await watcher.close()


async def test_huge_values_are_cut_in_the_database(database: str) -> None:
    async with Client(as_superuser(database, "--statement-timeout", "20")) as client:
        text = await call(client, "SELECT repeat('x', 200000000) AS big, 1 AS n", seconds=30)
        assert text.structured_content["columns"] == ["big", "n"]
        [[big, n]] = text.structured_content["rows"]
        assert big == "x" * MAX_TEXT_CHARS + f"[... {200_000_000 - MAX_TEXT_CHARS} more characters]" and n == 1
        raw = await call(client, "SELECT convert_to(repeat('y', 50000000), 'UTF8') AS b, '\\x00ff'::bytea AS s")
        assert raw.structured_content["rows"] == [["<50000000 bytes>", "base64:AP8="]]
        json = await call(client, "SELECT to_jsonb(repeat('z', 10000000)) AS j, '{\"a\": [1]}'::jsonb AS small")
        [[huge, small]] = json.structured_content["rows"]
        assert huge.startswith("<a jsonb value of 1000") and "too large to send" in huge and small == {"a": [1]}
        error = await call(client, "SELECT repeat('x', 10000000)::int")  # PostgreSQL quotes the value it refuses
        assert error.is_error and len(text_of(error)) < 3000 and "more characters]" in text_of(error)
        array = await call(client, "SELECT array_fill('x'::text, ARRAY[3]), NULL::text, NULL::bytea, NULL::jsonb")
        assert array.structured_content["rows"] == [[["x", "x", "x"], None, None, None]]
        found = processes_with(make_url(database).database or "?")
        [server_pid] = [pid for pid, command in found.items() if "servers.database" in command]
        assert peak_memory(server_pid) < 200 * 2**20, peak_memory(server_pid)  # 2.95 GB for repeat('x', 1e9) before


async def test_work_mem_and_temp_file_limit_are_set_for_each_query(database: str) -> None:
    async with Client(as_superuser(database, "--work-mem", "8MB")) as client:
        settings = await call(client, "SELECT current_setting('work_mem'), current_setting('temp_file_limit')")
        assert settings.structured_content["rows"] == [["8MB", "256MB"]]  # a superuser may set both


async def test_a_role_that_may_not_set_temp_file_limit_still_gets_work_mem(database: str) -> None:
    async with read_only_role(database) as reader, Client(server(reader, "--work-mem", "8MB")) as client:
        settings = await call(client, "SELECT current_setting('work_mem'), current_setting('temp_file_limit')")
        assert settings.structured_content["rows"] == [["8MB", "-1"]]  # the README says to set it on the role


async def test_privileged_roles_are_refused_unless_allowed(database: str) -> None:
    def start(url: str, *options: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "servers.database", "--url", url, *options]
        return subprocess.run(command, input="", capture_output=True, text=True, timeout=30, cwd=ROOT)

    superuser = start(database)
    assert superuser.returncode == 2
    assert (
        superuser.stderr.strip().splitlines()[-1].startswith("refusing to start: the database role root is a superuser")
    )
    grant = "GRANT INSERT ON items TO {role}"
    async with read_only_role(database, grant) as writer, read_only_role(database) as reader:
        refused = start(writer)
        assert (
            refused.returncode == 2 and "may write (INSERT, UPDATE, DELETE or TRUNCATE) public.items" in refused.stderr
        )
        assert "--allow-privileged-role" in refused.stderr
        assert start(reader).returncode == 0  # stdin ends at once: a clean stop
    allowed = start(database, "--allow-privileged-role")
    assert allowed.returncode == 0 and "warning (--allow-privileged-role): the database role root" in allowed.stderr


async def test_a_failed_stop_is_logged_and_the_backend_still_counted(caplog: pytest.LogCaptureFixture) -> None:
    stopped = StoppedBackends(make_url("postgresql+asyncpg://nobody@127.0.0.1:9/none"))  # nothing listens on port 9
    with anyio.fail_after(10):
        await stopped.stop(12345)
    assert stopped.pids == {12345} and "could not stop backend 12345" in caplog.text
