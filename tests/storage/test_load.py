"""A burst of new chats at once against a real SQLite file and this machine's PostgreSQL: no storage failure.

bench/store_bench.py measures the same burst in more sizes; this test only asserts that nobody is told
"I cannot reach my database"."""

import secrets
import time
from collections import Counter

import anyio
import anyio.lowlevel
import pytest

from host.errors import StorageError
from host.storage import ConversationStore, StoredMessage

pytestmark = pytest.mark.anyio

CHATS = 1000
BUSY_CHATS = 200
BUSY_LOOP_SECONDS = 0.005  # the event loop busy elsewhere (rendering, HTTP) this long at a time


def _message(role: str, text: str) -> StoredMessage:
    return StoredMessage(role=role, content=text, tool_calls=None, tool_call_id=None, token_count=5)  # type: ignore[arg-type]


async def test_1000_new_chats_at_once_store_their_first_message_without_a_failure(store_url: str) -> None:
    failures: Counter[str] = Counter()
    stored: list[int] = []
    base = secrets.randbits(40)

    async def new_chat(index: int) -> None:
        chat = base + index
        try:
            conversation = await store.begin_turn(chat, 0, _message("user", "hello"), chat, update_id=chat)
        except StorageError as error:
            failures[str(error)] += 1
        else:
            assert conversation is not None
            stored.append(conversation)

    with anyio.fail_after(120):
        async with ConversationStore.open(store_url) as store:
            async with anyio.create_task_group() as tasks:
                for index in range(CHATS):
                    tasks.start_soon(new_chat, index)
            window = await store.window(stored[-1], max_messages=5, max_tokens=100)
    assert dict(failures) == {}
    assert len(set(stored)) == CHATS  # a conversation each
    assert [message.content for message in window] == ["hello"]


async def test_200_new_chats_while_the_event_loop_is_busy_store_without_a_failure(store_url: str) -> None:
    """A busy bot's event loop comes back late to every database call. When a write transaction had to come back
    to it for each statement while holding SQLite's lock, 200 new chats gave dozens of "database is locked"."""
    failures: Counter[str] = Counter()
    base = secrets.randbits(40)

    async def new_chat(index: int) -> None:
        try:
            await store.begin_turn(base + index, 0, _message("user", "hello"), base + index, update_id=base + index)
        except StorageError as error:
            failures[str(error)] += 1

    async def busy_elsewhere() -> None:
        while True:
            time.sleep(BUSY_LOOP_SECONDS)  # noqa: ASYNC251 - blocks the loop, as a burst of CPU work in a handler does
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(120):
        async with ConversationStore.open(store_url) as store, anyio.create_task_group() as busy:
            busy.start_soon(busy_elsewhere)
            async with anyio.create_task_group() as tasks:
                for index in range(BUSY_CHATS):
                    tasks.start_soon(new_chat, index)
            busy.cancel_scope.cancel()
    assert dict(failures) == {}
