"""The process SQLite queries run in, so that the server can kill one at its deadline: SQLite checks its progress
handler and `interrupt()` only between VM instructions, and one instruction (`instr` on a huge string) can run for a
minute. `python -m servers.database.sqlite_worker CONFIG` reads one request per line on stdin (`{"sql": ...}`) and
answers one line on stdout (`{"columns", "rows", "note"}` or `{"error"}`), until stdin ends.

Inside it, a query is also held to the worker's own bounds: the read-only authorizer and the deadline
(`sqlite_policy`), the longest string or blob (`SQLITE_LIMIT_LENGTH`), SQLite's heap (`hard_heap_limit`, with
temporary tables and sorts kept in it rather than on disk) and the process's address space (`RLIMIT_AS`); rows are
rendered and cut to the result budget here, so the server receives at most that. The worker dies with the server
(`PR_SET_PDEATHSIG`). Never imports `host` or SQLAlchemy.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sqlite3
import sys
import time
from typing import Any

from servers.database.limits import Limits
from servers.database.render import render
from servers.database.rows import QueryError, Rows
from servers.database.sqlite_policy import SqlitePolicy

PR_SET_PDEATHSIG = 1
OUT_OF_MEMORY = "the query needed more memory than the server allows one query ({mib} MiB): select less"


def main() -> None:
    config = json.loads(sys.argv[1])
    limits = Limits(**config["limits"])
    _die_with(config["parent"])
    connection, policy = _open(config["target"], limits)
    resource.setrlimit(resource.RLIMIT_AS, (limits.max_query_memory, limits.max_query_memory))
    for line in sys.stdin.buffer:
        sql = json.loads(line)["sql"]
        try:
            answer = run(connection, policy, sql, limits)
        except MemoryError:  # the heap may be in any state: "fatal" tells the server to start a fresh worker
            _answer({"error": OUT_OF_MEMORY.format(mib=limits.max_query_memory // 2**20), "fatal": True})
            return
        _answer(answer)


def run(connection: sqlite3.Connection, policy: SqlitePolicy, sql: str, limits: Limits) -> dict[str, Any]:
    """One query's answer: its rendered rows within the budget, or the error to show."""
    policy.denied = None
    policy.deadline = time.monotonic() + limits.statement_timeout
    rows = Rows(limits)
    try:
        cursor = connection.execute(sql)
        try:
            columns = [str(column[0]) for column in cursor.description or ()]
            while not rows.full:
                wanted = rows.batch()
                fetched = cursor.fetchmany(wanted)
                for row in fetched:
                    rows.add(row, lambda value, _: render(value))
                if len(fetched) < wanted:
                    break
        finally:
            cursor.close()
    except QueryError as error:
        return {"error": str(error)}
    except sqlite3.Error as error:
        return {"error": _explain(error, policy, limits)}
    finally:
        policy.deadline = None
        if connection.in_transaction:
            connection.rollback()
    return {"columns": columns, "rows": rows.rows, "note": rows.note}


def _explain(error: sqlite3.Error, policy: SqlitePolicy, limits: Limits) -> str:
    text = str(error)
    if "interrupt" in text and policy.deadline is not None and time.monotonic() > policy.deadline:
        return f"the query ran past its {limits.statement_timeout:g} s deadline and was stopped"
    if "too big" in text:
        return (f"the database refused the query: {text} (a string or blob may hold at most {limits.max_value_bytes} "
                "bytes here: select a part of it, e.g. substr(x, 1, 1000))")  # fmt: skip
    if isinstance(error, sqlite3.OperationalError) and "out of memory" in text:
        return OUT_OF_MEMORY.format(mib=limits.max_query_memory // 2**20)
    refused = f" (refused by the read-only authorizer: {policy.denied})" if policy.denied else ""
    return f"the database refused the query: {text}{refused}"


def _open(target: str, limits: Limits) -> tuple[sqlite3.Connection, SqlitePolicy]:
    connection = sqlite3.connect(target, uri=target.startswith("file:"), check_same_thread=False)
    connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    connection.execute(f"PRAGMA hard_heap_limit = {limits.max_query_memory // 2}")
    connection.execute("PRAGMA temp_store = MEMORY")  # sorts and temporary b-trees count against the heap, not disk
    connection.execute("PRAGMA query_only = ON")
    policy = SqlitePolicy()
    policy.install(connection)
    return connection, policy


def _answer(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _die_with(parent: int) -> None:
    """Be killed when the server exits, even in the middle of a query that no longer reads stdin (Linux; elsewhere
    the worker ends when its stdin does, after its query)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the server died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    main()
