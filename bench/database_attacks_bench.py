"""What hostile queries cost the database server on SQLite: wall time of each call, and the peak resident memory
(VmHWM) of the server and of its query workers, run from a folder outside the repository against a fresh database,
over MCP stdio as a host runs it (`mcpbot-database --url ...`, default options). See bench/README.md.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

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


def peak(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return 0


def processes_with(marker: str) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command and "database_attacks_bench" not in command:
                found.append((int(entry.name), command))
    return found


async def main(folder: Path, command: str) -> None:
    database = folder / "bench.db"
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT)")
        connection.executemany("INSERT INTO t (label) VALUES (?)", [(f"row {n}",) for n in range(1000)])
        connection.commit()
    params = StdioServerParameters(command=command, args=["--url", f"sqlite:///{database}"], cwd=str(folder))
    print(f"{'query':32} {'wall s':>7} {'worker MiB':>10}  outcome")
    async with Client(params) as client:
        for name, query in QUERIES.items():
            started = time.monotonic()
            result = await client.call_tool("query_database", {"query": query})
            elapsed = time.monotonic() - started
            text = " ".join(getattr(part, "text", "") for part in result.content)
            outcome = text[:90] if result.is_error else f"{result.structured_content['row_count']} rows"
            workers = [pid for pid, line in processes_with(str(database)) if "sqlite_worker" in line]
            memory = str(max(map(peak, workers))) if workers else "killed"
            print(f"{name:32} {elapsed:7.2f} {memory:>10}  {outcome.removeprefix('Error executing tool ')}")
        processes = processes_with(str(database))
        server = [pid for pid, line in processes if "sqlite_worker" not in line]
        print(f"server peak RSS: {', '.join(f'{peak(pid)} MiB' for pid in server)}")


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description=__doc__)
    default = str(Path(sys.executable).with_name("mcpbot-database"))
    arguments.add_argument("--command", default=default, help="the server to run (default: this venv's)")
    options = arguments.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcpbot-dbbench-") as directory:
        anyio.run(main, Path(directory), options.command)
