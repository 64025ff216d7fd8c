"""Benchmark the conversation window: the newest 50 messages of a conversation of 10, 1,000 and 100,000 messages
on SQLite (a temporary file) and PostgreSQL (a throw-away database, when reachable), with each query plan.
With `--sealed`, message content is sealed as with SECRET_KEY set (host/storage/sealing.py), to measure its cost.
Run: `python -m bench.window_bench [--postgres-url URL] [--reads N] [--sealed]`.
"""

import argparse
import re
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from host.storage import ConversationStore, Sealer
from host.storage.models import Message
from host.storage.repository import window_query
from tests.postgres import create_database, drop_databases

SIZES = (10, 1_000, 100_000)
WINDOW = {"max_messages": 50, "max_tokens": 8000}
POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"


async def fill(store: ConversationStore, size: int) -> int:
    conversation = await store.current_conversation(secrets.randbits(40))
    now = datetime.now(UTC)
    rows = [
        {"conversation_id": conversation, "role": ("user", "assistant")[i % 2], "content": f"message {i} " * 8}
        for i in range(size)
    ]
    async with store.engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            raw = await connection.get_raw_connection()
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                "messages",
                columns=["conversation_id", "role", "content", "token_count", "created_at"],
                records=[
                    (r["conversation_id"], r["role"], store.sealer.seal(r["content"], "content"), 25, now) for r in rows
                ],
            )
            await connection.execute(text("ANALYZE messages"))
        else:
            await connection.execute(insert(Message).values(token_count=25, created_at=now), rows)
    return conversation


async def plan(connection: AsyncConnection, conversation: int) -> str:
    sql = str(
        window_query(conversation, 50).compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    )
    prefix = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
    rows = (await connection.execute(text(prefix + sql))).all()
    lines = [str(row[-1]).strip() for row in rows]
    line = next((line for line in lines if "Scan" in line or "SEARCH" in line or "SCAN" in line), lines[0])
    return re.sub(r"\s*\(cost=.*\)$", "", line.removeprefix("->").strip())


async def measure(store: ConversationStore, conversation: int, reads: int) -> list[float]:
    for _ in range(20):  # warm the cache and the connection pool
        await store.window(conversation, **WINDOW)
    timings = []
    for _ in range(reads):
        start = time.perf_counter()
        await store.window(conversation, **WINDOW)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


async def bench(name: str, url: str, reads: int, sealer: Sealer) -> list[tuple[str, ...]]:
    rows = []
    async with ConversationStore.open(url, sealer) as store:
        sizes = {}
        for size in SIZES:
            start = time.perf_counter()
            sizes[size] = await fill(store, size)
            print(f"  {name}: inserted {size:,} messages in {time.perf_counter() - start:.2f} s")
        for size, conversation in sizes.items():
            timings = sorted(await measure(store, conversation, reads))
            returned = len(await store.window(conversation, **WINDOW))
            async with store.engine.connect() as connection:
                query_plan = await plan(connection, conversation)
            p95 = timings[int(len(timings) * 0.95) - 1]
            median = statistics.median(timings)
            rows.append((name, f"{size:,}", str(returned), f"{median:.3f}", f"{p95:.3f}", query_plan))
    return rows


async def main_async(arguments: argparse.Namespace) -> None:
    rows: list[tuple[str, ...]] = []
    sealer = Sealer("bench-key-" + "b" * 32 if arguments.sealed else None)
    with tempfile.TemporaryDirectory() as directory:
        rows += await bench("SQLite", f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}", arguments.reads, sealer)
    try:
        url = await create_database(arguments.postgres_url, "mcpbot_windowbench")
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"  PostgreSQL skipped: {exc}")
    else:
        try:
            rows += await bench("PostgreSQL", url, arguments.reads, sealer)
        finally:
            await drop_databases(arguments.postgres_url, [url])
    header = ("backend", "messages", "rows", "median ms", "p95 ms", "plan")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    sealed = "content sealed" if arguments.sealed else "content in clear"
    print(f"\nwindow(max_messages=50, max_tokens=8000), {arguments.reads} reads each, {sealed}")
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--sealed", action="store_true", help="seal content as with SECRET_KEY set")
    args: Any = parser.parse_args()
    anyio.run(main_async, args)


if __name__ == "__main__":
    main()
