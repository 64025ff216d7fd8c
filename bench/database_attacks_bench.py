"""What hostile queries cost the database server: wall time of each call, and the peak resident memory (VmHWM) of the
server and, on SQLite, of its query worker, run from a folder outside the repository against a fresh database, over
MCP stdio as a host runs it (`mcpbot-database --url ...`, default options). On PostgreSQL the server connects as a
throw-away read-only role, and the live backends of the server are counted after each call. See bench/README.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from mcp import Client, StdioServerParameters
from sqlalchemy.engine import make_url

from tests.servers.test_database_sqlite_resources import peak_memory, processes_with  # the tests' /proc readers

MIB = 1024 * 1024
SERVER_COMMANDS = ("mcpbot-database", "servers.database")  # a command line's end before " --url"
POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"
POSTGRESQL_QUERIES = {
    "plain SELECT": "SELECT count(*) FROM t",
    "one strpos() call of ~70 s": "SELECT strpos(repeat('a', 20000000), 'b' || repeat('a', 10000))",
    "repeat('x', 1e9)": "SELECT repeat('x', 1000000000)",
    "repeat('x', 2e8)": "SELECT repeat('x', 200000000)",
    "to_jsonb of 100 MB": "SELECT to_jsonb(repeat('z', 100000000))",
    "pg_sleep(60)": "SELECT pg_sleep(60)",
    "sort of 2 GB": "SELECT count(*) FROM (SELECT g, md5(g::text) || repeat('x', 1000) AS b "
    "FROM generate_series(1, 2000000) g ORDER BY b) s",
}
QUERIES = {
    "plain SELECT": "SELECT count(*) FROM t",
    "one instr() call on 16 MB": (
        "SELECT instr(replace(hex(zeroblob(8000000)),'0','a'), replace(hex(zeroblob(20000)),'0','a')||'b')"
    ),
    "the issue's instr() on 100 MB": (
        "SELECT instr(replace(hex(zeroblob(50000000)),'0','a'), replace(hex(zeroblob(20000)),'0','a')||'b')"
    ),
    "4 x zeroblob(3e8)": "SELECT zeroblob(3e8), zeroblob(3e8), zeroblob(3e8), zeroblob(3e8)",
    "sort of 2 GB of blobs": (
        "SELECT count(*) FROM (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2000000) "
        "SELECT n, randomblob(1000) AS b FROM r ORDER BY b)"
    ),
    "endless recursive CTE": "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "result at the byte budget": (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000) "
        "SELECT n, printf('%.*c', 60000, 'x') FROM r"
    ),
    "600 columns of 16 MB": "SELECT " + ", ".join(["printf('%.*c', 16000000, 'x')"] * 600),
}


async def sqlite(folder: Path, command: str) -> None:
    database = folder / "bench.db"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT)")
        connection.executemany("INSERT INTO t (label) VALUES (?)", [(f"row {n}",) for n in range(1000)])
        connection.commit()
    await measure(folder, command, f"sqlite:///{database}", str(database), QUERIES, None)


async def postgresql(folder: Path, command: str, base_url: str) -> None:
    from tests.postgres import read_only_role, throwaway_database  # the tests' helpers: a dev-only dependency

    setup = "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT g FROM generate_series(1, 1000) g"
    async with throwaway_database(base_url, "mcpbot_dbbench", setup) as url, read_only_role(url) as reader:
        name = make_url(url).database or ""
        watcher = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        try:
            await measure(folder, command, reader, name, POSTGRESQL_QUERIES, watcher)
            await watcher.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
                                  "AND pid <> pg_backend_pid()", name)  # fmt: skip
        finally:
            await watcher.close()


async def measure(folder: Path, command: str, url: str, marker: str, queries: dict[str, str], watcher: Any) -> None:
    params = StdioServerParameters(command=command, args=["--url", url], cwd=str(folder))
    print(f"{'query':32} {'wall s':>7} {'worker MiB' if watcher is None else 'backends':>10}  outcome")
    async with Client(params) as client:
        for name, query in queries.items():
            started = time.monotonic()
            result = await client.call_tool("query_database", {"query": query})
            elapsed = time.monotonic() - started
            text = " ".join(getattr(part, "text", "") for part in result.content)
            outcome = text[:90] if result.is_error else f"{result.structured_content['row_count']} rows"
            if watcher is None:
                workers = [pid for pid, line in processes_with(marker).items() if "sqlite_worker" in line]
                figure = str(max(map(peak_memory, workers)) // MIB) if workers else "killed"
            else:
                figure = str(await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'mcpbot-database' AND state = 'active'"))  # fmt: skip
            print(f"{name:32} {elapsed:7.2f} {figure:>10}  {outcome.removeprefix('Error executing tool ')}")
        server = [
            pid for pid, line in processes_with(marker).items() if line.split(" --url")[0].endswith(SERVER_COMMANDS)
        ]
        print(f"server peak RSS: {', '.join(f'{peak_memory(pid) // MIB} MiB' for pid in server)}")


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__)
    default = str(Path(sys.executable).with_name("mcpbot-database"))
    arguments.add_argument("--command", default=default, help="the server to run (default: this venv's)")
    arguments.add_argument("--postgres-url", default=POSTGRES_URL, help=f"a superuser's URL (default: {POSTGRES_URL})")
    arguments.add_argument("backend", choices=["sqlite", "postgresql"], nargs="?", default="sqlite")
    options = arguments.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcpbot-dbbench-") as directory:
        if options.backend == "sqlite":
            anyio.run(sqlite, Path(directory), options.command)
        else:
            anyio.run(postgresql, Path(directory), options.command, options.postgres_url)
