"""What one caller can make the database server spend on SQLite, over MCP stdio against the real server process: a query
stuck inside one function call is answered at its deadline and its worker killed; calls past the concurrency cap are
refused at once and never starve the next plain SELECT; values, heap and address space are bounded; read-only
table-valued functions work; the workers die with the server.
"""

import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from servers.database.limits import Limits
from servers.database.sqlite import SqliteWorkers, WorkerFailed
from tests.servers.conftest import stdio_params
from tests.servers.test_database_attacks import ITEMS, make_sqlite_database, text_of

pytestmark = pytest.mark.anyio

# One `instr` over a 16 MB haystack: SQLite never reaches its progress handler while it runs (tens of seconds).
STUCK = "SELECT instr(replace(hex(zeroblob(8000000)),'0','a'), replace(hex(zeroblob(20000)),'0','a')||'b')"
# The issue's query: its haystack (100 MB) is past the value limit, so it is refused before it starts.
ISSUE_QUERY = "SELECT instr(replace(hex(zeroblob(50000000)),'0','a'), replace(hex(zeroblob(20000)),'0','a')||'b')"
# A sort of ~2 GB of random blobs: SQLite would spill it to temporary files; here it must stay in the heap limit.
BIG_SORT = (
    "SELECT count(*) FROM (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 2000000) "
    "SELECT n, randomblob(1000) AS b FROM r ORDER BY b)"
)


def server(database: Path, *options: str) -> Any:
    return stdio_params("servers.database", "--url", f"sqlite:///{database}", *options)


async def call(client: Client, query: str, seconds: float = 15) -> Any:
    with anyio.fail_after(seconds):
        return await client.call_tool("query_database", {"query": query})


async def count_items(client: Client) -> None:
    result = await call(client, "SELECT count(*) FROM items")
    assert not result.is_error, text_of(result)
    assert result.structured_content["rows"] == [[ITEMS]]


def processes_with(marker: str) -> dict[int, str]:
    """pid -> command line of this machine's processes whose command line holds `marker`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command:
                found[int(entry.name)] = command
    return found


def peak_memory(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def workers_of(database: Path) -> list[int]:
    return [pid for pid, command in processes_with(str(database)).items() if "sqlite_worker" in command]


async def test_a_query_stuck_in_one_function_call_is_answered_at_its_deadline(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    async with Client(server(database, "--statement-timeout", "1")) as client:
        await count_items(client)
        [first_worker] = workers_of(database)
        started = time.monotonic()
        stuck = await call(client, STUCK)
        elapsed = time.monotonic() - started
        assert stuck.is_error and "ran past its 1 s deadline and was stopped" in text_of(stuck)
        assert elapsed < 2.5, f"the tool answered after {elapsed:.1f} s against a 1 s deadline"
        assert first_worker not in workers_of(database)  # killed, not left running
        await count_items(client)  # a fresh worker answers the next query

        started = time.monotonic()
        refused = await call(client, ISSUE_QUERY)
        assert refused.is_error and "string or blob too big" in text_of(refused)
        assert "at most 16777216 bytes" in text_of(refused) and time.monotonic() - started < 2


async def test_calls_past_the_cap_are_refused_at_once_and_hogs_never_starve_others(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    options = ("--statement-timeout", "2", "--max-concurrent-queries", "2")
    async with Client(server(database, *options)) as client:
        outcomes: list[str] = []

        async def hog() -> None:
            while "already running" in (outcome := text_of(await call(client, STUCK))):
                pass  # a plain SELECT below got in first: ask again
            outcomes.append(outcome)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(hog)
                group.start_soon(hog)
                await anyio.wait_all_tasks_blocked()  # both hogs' requests are sent
                started = time.monotonic()
                while True:  # once both hogs run, the next call is refused
                    refused = await call(client, "SELECT 1")
                    if refused.is_error:
                        break
                assert time.monotonic() - started < 1.5, "the extra call was not refused at once"
                assert "already running 2 queries, as many as it runs at once" in text_of(refused)
                assert "each ends within 2 s" in text_of(refused)
        assert len(outcomes) == 2 and all("deadline" in outcome for outcome in outcomes), outcomes
        started = time.monotonic()
        await count_items(client)
        assert time.monotonic() - started < 2
        listed = await client.call_tool("list_tables", {})
        assert not listed.is_error and "items" in text_of(listed)


async def test_memory_is_bounded_for_any_single_query(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    async with Client(server(database, "--statement-timeout", "10", "--max-query-memory", str(256 * 2**20))) as client:
        four = await call(client, "SELECT zeroblob(3e8), zeroblob(3e8), zeroblob(3e8), zeroblob(3e8)")
        assert four.is_error and "string or blob too big" in text_of(four)

        sort = await call(client, BIG_SORT, seconds=20)
        assert sort.is_error and "more memory than the server allows one query (256 MiB)" in text_of(sort)

        await count_items(client)
        [worker] = workers_of(database)
        [server_pid] = [pid for pid, command in processes_with(str(database)).items() if pid != worker]
        assert peak_memory(worker) < 300 * 2**20, peak_memory(worker)
        assert peak_memory(server_pid) < 200 * 2**20, peak_memory(server_pid)
    assert not workers_of(database)


async def test_read_only_table_valued_functions_work(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    async with Client(server(database)) as client:
        each = await call(client, "SELECT value FROM json_each('[1, 2, 3]') WHERE value > 1")
        assert each.structured_content["rows"] == [[2], [3]]
        tree = await call(client, "SELECT count(*) FROM json_tree('{\"a\": [1, 2]}')")
        assert tree.structured_content["rows"] == [[4]]
        columns = await call(client, "SELECT name FROM pragma_table_info('items') ORDER BY cid")
        assert columns.structured_content["rows"] == [["id"], ["name"], ["price"]]
        for refused in ("SELECT * FROM pragma_database_list", "SELECT * FROM dbstat"):
            result = await call(client, refused)
            assert result.is_error and "not a known read-only one (json_each, json_tree" in text_of(result), refused


async def test_workers_die_with_the_server(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    async with Client(server(database, "--statement-timeout", "30")) as client:
        await count_items(client)
        [worker] = workers_of(database)

        async def doomed() -> None:
            with pytest.raises(MCPError, match="Connection closed"):
                await call(client, STUCK, 60)

        async with anyio.create_task_group() as group:
            group.start_soon(doomed)
            await anyio.wait_all_tasks_blocked()
            [server_pid] = [pid for pid in processes_with(str(database)) if pid != worker]
            watch = os.pidfd_open(worker)  # readable once the worker has ended
            try:
                os.kill(server_pid, 9)  # no clean shutdown: the worker is busy and does not read its stdin
                with anyio.fail_after(10):
                    await anyio.wait_readable(watch)
            finally:
                os.close(watch)


async def test_a_cancelled_call_kills_its_worker(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    async with Client(server(database, "--statement-timeout", "30")) as client:
        await count_items(client)
        [worker] = workers_of(database)
        watch = os.pidfd_open(worker)
        try:
            with anyio.move_on_after(0.5):  # the host gives up: the SDK sends notifications/cancelled
                await call(client, STUCK, 60)
            with anyio.fail_after(10):
                await anyio.wait_readable(watch)
        finally:
            os.close(watch)
        await count_items(client)


async def test_a_worker_that_dies_is_a_clear_error_and_is_replaced(tmp_path: Path) -> None:
    database = make_sqlite_database(tmp_path)
    async with Client(server(database, "--statement-timeout", "30")) as client:
        await count_items(client)
        [worker] = workers_of(database)
        async with anyio.create_task_group() as group:

            async def stuck() -> None:
                result = await call(client, STUCK, 20)
                assert result.is_error and "worker process ended (killed by signal 9" in text_of(result)

            group.start_soon(stuck)
            await anyio.wait_all_tasks_blocked()
            os.kill(worker, 9)  # as the kernel's OOM killer would
        await count_items(client)


async def test_an_answer_past_the_limit_ends_the_worker() -> None:
    workers = SqliteWorkers(":memory:", Limits())
    try:
        with anyio.fail_after(15):
            worker = await workers._start()
            worker.answer_limit = 1024
            with pytest.raises(WorkerFailed, match="larger than the result limit"):  # 120 KB: more than one read
                await worker.ask("SELECT printf('%.*c', 60000, 'x'), printf('%.*c', 60000, 'y')")
    finally:
        with anyio.fail_after(10):
            await worker.kill()
