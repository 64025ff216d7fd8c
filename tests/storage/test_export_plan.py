"""/export of a user with 3 messages among 100,000 of others reads only that user's rows, by index, on SQLite and
on PostgreSQL (with the statistics autovacuum keeps), whatever the size of the table."""

from typing import Any

import anyio
import pytest

from host.storage import ConversationStore
from host.storage.export import _page
from tests.storage.test_schema import _bulk_insert, _message, _plan

pytestmark = pytest.mark.anyio
BIG = 100_000


async def test_an_export_reads_only_the_users_rows(empty_url: str, new_id: Any) -> None:
    with anyio.fail_after(60):
        async with ConversationStore.open(empty_url) as store:
            busy = await store.current_conversation(-100)  # some group's conversation, by others
            async with store.engine.begin() as connection:
                await _bulk_insert(connection, busy, BIG)
                if connection.dialect.name == "postgresql":
                    await connection.exec_driver_sql("ANALYZE messages")
            mine = await store.current_conversation(42)
            for index in range(3):
                await store.append(mine, _message(f"mine {index}"), user_id=42)
            async with store.engine.connect() as connection:
                plan = await _plan(connection, _page(42, 42, [mine], None, 500))
            exported = await store.exports.of_user(42, 42, 20 * 2**20)
    assert exported.messages == 3
    assert "SCAN messages" not in plan and "Seq Scan on messages" not in plan, plan
