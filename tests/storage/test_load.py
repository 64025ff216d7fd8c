"""A burst of new chats at once against a real SQLite file and this machine's PostgreSQL: no storage failure.

bench/store_bench.py measures the same burst in more sizes; this test only asserts that nobody is told
"I cannot reach my database"."""

import secrets
from collections import Counter

import anyio
import pytest

from host.storage import ConversationStore, StorageError, StoredMessage

pytestmark = pytest.mark.anyio

CHATS = 1000


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
