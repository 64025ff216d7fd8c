"""Migrations, the SQLite file, and the one indexed query behind a window, proven on 100,000 messages."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from host.storage import ConversationStore, StoredMessage
from host.storage.models import Base, Message
from host.storage.repository import window_query

pytestmark = pytest.mark.anyio

BIG = 100_000


async def test_migrations_run_on_an_empty_database_and_again_as_a_no_op(empty_url: str) -> None:
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url) as store:
            async with store.engine.connect() as connection:
                assert await connection.scalar(text("SELECT version_num FROM alembic_version")) == "0003"
                differences = await connection.run_sync(_differences)
            conversation = await store.current_conversation(1)
            await store.append(conversation, _message("kept across migrations"))
        async with ConversationStore.open(empty_url) as store:  # migrated already: nothing to do, nothing lost
            async with store.engine.connect() as connection:
                assert (await connection.execute(text("SELECT version_num FROM alembic_version"))).all() == [("0003",)]
            window = await store.window(conversation, max_messages=10, max_tokens=100)
    assert differences == []  # the hand-written migration builds exactly what the models declare
    assert [message.content for message in window] == ["kept across migrations"]


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_the_sqlite_file_is_created_with_its_directory_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "data" / "deeper" / "mcpbot.db"
    with anyio.fail_after(20):
        async with ConversationStore.open(f"sqlite+aiosqlite:///{path}") as store:
            async with store.engine.connect() as connection:
                journal = await connection.scalar(text("PRAGMA journal_mode"))
                foreign_keys = await connection.scalar(text("PRAGMA foreign_keys"))
                busy = await connection.scalar(text("PRAGMA busy_timeout"))
            assert await store.healthy() is True
    assert path.is_file()
    assert (journal, foreign_keys) == ("wal", 1)
    assert busy is not None and busy > 0


async def test_a_window_of_100000_messages_is_one_indexed_read(store_url: str, new_id: Any) -> None:
    with anyio.fail_after(45):
        async with ConversationStore.open(store_url) as store:
            big = await store.current_conversation(new_id())
            small = await store.current_conversation(new_id())
            for index in range(10):
                await store.append(small, _message(f"small {index}"))
            async with store.engine.begin() as connection:
                await _bulk_insert(connection, big, BIG)
            plans = {}
            async with store.engine.connect() as connection:
                for name, conversation in (("big", big), ("small", small)):
                    plans[name] = await _plan(connection, window_query(conversation, 50))
            window = await store.window(big, max_messages=50, max_tokens=8000)
            assert [message.content for message in window] == [f"message {index}" for index in range(BIG - 50, BIG)]
            assert len(await store.window(small, max_messages=50, max_tokens=8000)) == 10
    for plan in plans.values():
        if make_url(store_url).get_backend_name() == "sqlite":
            assert "USING INDEX ix_messages_conversation_id_id (conversation_id=?)" in plan, plan
            assert "TEMP B-TREE" not in plan and "SCAN messages" not in plan, plan
        else:
            assert "Index Scan Backward" in plan, plan
            assert "Seq Scan" not in plan and "Sort" not in plan, plan


def _message(content: str) -> StoredMessage:
    return StoredMessage(role="user", content=content, tool_calls=None, tool_call_id=None, token_count=10)


async def _bulk_insert(connection: AsyncConnection, conversation: int, count: int) -> None:
    now = datetime.now(UTC)
    rows = [
        {"conversation_id": conversation, "role": "user", "content": f"message {index}", "token_count": 10}
        for index in range(count)
    ]
    if connection.dialect.name == "postgresql":  # COPY: the fast path for 100,000 rows
        raw = await connection.get_raw_connection()
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            "messages",
            columns=["conversation_id", "role", "content", "token_count", "created_at"],
            records=[(row["conversation_id"], row["role"], row["content"], 10, now) for row in rows],
        )
        await connection.execute(text("ANALYZE messages"))
    else:
        await connection.execute(insert(Message).values(created_at=now), rows)


async def _plan(connection: AsyncConnection, query: Any) -> str:
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    prefix = "EXPLAIN QUERY PLAN " if connection.dialect.name == "sqlite" else "EXPLAIN "
    rows = (await connection.execute(text(prefix + sql))).all()
    return "\n".join(str(row[-1]) for row in rows)
