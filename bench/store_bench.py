"""Benchmark the conversation store under a burst: N new chats at once, each storing the start of a turn
(begin_turn), reading its window and storing its answer (append), on SQLite (a temporary file) and PostgreSQL
(a throw-away database).
Counts the StorageErrors (what a user sees as "I cannot reach my database") and the wall time of the burst.
Run: `python -m bench.store_bench [--chats 200 1000] [--postgres-url URL]`.
"""

import argparse
import secrets
import tempfile
import time
from collections import Counter

import anyio

from host.errors import StorageError
from host.storage import ConversationStore, StoredMessage
from tests.postgres import create_database, drop_databases

POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"


def _text(role: str, text: str) -> StoredMessage:
    return StoredMessage(role=role, content=text, tool_calls=None, tool_call_id=None, token_count=10)  # type: ignore[arg-type]


async def burst(store: ConversationStore, chats: int) -> tuple[float, Counter[str]]:
    """Every chat at once: begin_turn (a new chat, a new user, a claimed update), then append the answer."""
    failures: Counter[str] = Counter()
    base = secrets.randbits(40)

    async def one(index: int) -> None:
        try:
            conversation = await store.begin_turn(
                base + index, 0, _text("user", "hi"), base + index, update_id=base + index
            )
            assert conversation is not None
            await store.window(conversation, max_messages=50, max_tokens=8000)
            await store.append(conversation, _text("assistant", "hello"))
        except StorageError as error:
            failures[str(error)[:90]] += 1

    started = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for index in range(chats):
            tasks.start_soon(one, index)
    return time.perf_counter() - started, failures


async def run(url: str, label: str, sizes: list[int]) -> None:
    async with ConversationStore.open(url) as store:
        for chats in sizes:
            seconds, failures = await burst(store, chats)
            print(f"{label:10} {chats:5} chats  {seconds:6.2f} s  failures {sum(failures.values())}  {dict(failures)}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        await run(f"sqlite+aiosqlite:///{folder}/bench.db", "sqlite", args.chats)
    url = await create_database(args.postgres_url, "mcpbot_storebench")
    try:
        await run(url, "postgresql", args.chats)
    finally:
        await drop_databases(args.postgres_url, [url])


if __name__ == "__main__":
    anyio.run(main)
