"""`python -m servers.database` and the `mcpbot-database` console script: options, then the shared launcher.
Never imports `host`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import anyio

from servers import launch
from servers.database.connection import database_url
from servers.database.limits import MIB, Limits
from servers.database.role import refusal
from servers.database.server import build_server

URL_EXAMPLE = "sqlite+aiosqlite:///./data/demo.db"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def memory_size(text: str) -> str:
    """A PostgreSQL memory setting such as 64MB or 1GB (kB, MB, GB, TB; no unit: kB)."""
    if not re.fullmatch(r"[1-9][0-9]{0,9}(kB|MB|GB|TB)?", text):
        raise argparse.ArgumentTypeError("must be a size such as 4096kB, 64MB or 1GB")
    return text


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m servers.database",
        description="A read-only MCP server for one SQLite or PostgreSQL database.",
    )
    result.add_argument(
        "--url",
        default=os.environ.get("MCP_DATABASE_URL"),
        help=f"SQLAlchemy URL, e.g. {URL_EXAMPLE} or postgresql+asyncpg://reader@host/db (default: $MCP_DATABASE_URL)",
    )
    result.add_argument("--row-limit", type=positive_int, default=500, help="most rows a result holds (default: 500)")
    result.add_argument(
        "--statement-timeout", type=positive_float, default=10.0, help="seconds a query may run (default: 10)"
    )
    result.add_argument(
        "--max-query-length", type=positive_int, default=20_000, help="longest query in characters (default: 20000)"
    )
    result.add_argument(
        "--max-result-bytes",
        type=positive_int,
        default=4 * 1024 * 1024,
        help="most bytes of rows (as JSON) a result holds; the rest is cut with truncated=true (default: 4 MiB)",
    )
    result.add_argument(
        "--max-concurrent-queries",
        type=positive_int,
        default=4,
        help="queries that may run at once; more are refused at once with a clear message (default: 4)",
    )
    result.add_argument(
        "--max-value-bytes",
        type=positive_int,
        default=16 * MIB,
        help="SQLite: longest string or blob a query may make or read (SQLITE_LIMIT_LENGTH; default: 16 MiB)",
    )
    result.add_argument(
        "--max-query-memory",
        type=positive_int,
        default=512 * MIB,
        help="SQLite: memory (address space) of the worker process a query runs in (default: 512 MiB)",
    )
    result.add_argument(
        "--work-mem",
        type=memory_size,
        default="4MB",
        help="PostgreSQL: work_mem for each query (default: 4MB)",
    )
    result.add_argument(
        "--temp-file-limit",
        type=memory_size,
        default="256MB",
        help="PostgreSQL: temp_file_limit for each query, where the role may set it (default: 256MB)",
    )
    result.add_argument(
        "--allow-privileged-role",
        action="store_true",
        help="PostgreSQL: start even as a superuser or a role that owns, may write or may create (default: refuse)",
    )
    launch.add_transport_arguments(result)
    return result


def main() -> None:
    arguments = parser()
    options = arguments.parse_args()
    if not options.url:
        arguments.error(f"no database: pass --url (e.g. --url {URL_EXAMPLE}) or set MCP_DATABASE_URL")
    try:
        url = database_url(options.url)
    except ValueError as error:
        arguments.error(str(error))
    limits = Limits(
        row_limit=options.row_limit,
        statement_timeout=options.statement_timeout,
        max_query_length=options.max_query_length,
        max_result_bytes=options.max_result_bytes,
        max_concurrent_queries=options.max_concurrent_queries,
        max_value_bytes=options.max_value_bytes,
        max_query_memory=options.max_query_memory,
        work_mem=options.work_mem,
        temp_file_limit=options.temp_file_limit,
    )
    if url.get_backend_name() == "postgresql":
        refused = anyio.run(refusal, url)
        if refused and not options.allow_privileged_role:
            sys.stderr.write(refused + "\n")
            raise SystemExit(2)
        if refused:
            sys.stderr.write("warning (--allow-privileged-role): " + refused.removeprefix("refusing to start: ") + "\n")
    launch.run(build_server(url, limits), options)


if __name__ == "__main__":
    main()
