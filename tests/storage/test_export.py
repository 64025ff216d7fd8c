"""What /export reads: every conversation of the user's private chat (ended ones too) with all its messages, their
own messages in groups and nobody else's, read in pages; past the cap the older messages are left out and the
result says so. SQLite file and PostgreSQL."""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest

from host.storage import ConversationStore, StoredMessage
from host.storage.export import MESSAGE_OVERHEAD, ExportedMessage, size

pytestmark = pytest.mark.anyio

CALL = [{"id": "c1", "type": "function", "function": {"name": "files__read_file", "arguments": '{"path": "a"}'}}]


def said(
    text: str | None, role: str = "user", tool_calls: Any = None, tool_call_id: str | None = None
) -> StoredMessage:
    return StoredMessage(role=role, content=text, tool_calls=tool_calls, tool_call_id=tool_call_id, token_count=5)  # type: ignore[arg-type]


async def test_the_private_chat_whole_and_only_the_users_own_group_messages(
    store_url: str, new_id: Callable[[], int]
) -> None:
    user, other, group = new_id(), new_id(), -new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            first = await store.current_conversation(user)
            await store.append(first, said("before the reset"), user)
            await store.append(first, said(None, "assistant", CALL))
            await store.append(first, said("file text", "tool", tool_call_id="c1"))
            await store.append(first, said("Read it.", "assistant"))
            await store.reset(user)
            second = await store.current_conversation(user)
            await store.append(second, said("after the reset"), user)
            in_group = await store.current_conversation(group)
            await store.append(in_group, said("mine in the group"), user)
            await store.append(in_group, said("someone else's words"), other)
            await store.append(in_group, said("the bot to the group", "assistant"))
            elsewhere = await store.current_conversation(other)
            await store.append(elsewhere, said("the other user's private chat"), other)

            exported = await store.exports.of_user(user, user, max_bytes=10_000, page=2)
    assert not exported.cut and exported.messages == 6
    texts = [[message.content for message in conversation.messages] for conversation in exported.conversations]
    assert texts == [
        ["before the reset", None, "file text", "Read it."],
        ["after the reset"],
        ["mine in the group"],
    ]
    first_export, second_export, group_export = exported.conversations
    assert first_export.reset_at is not None and second_export.reset_at is None
    assert first_export.private and not group_export.private and group_export.chat_id == group
    assert first_export.messages[1].tool_calls == CALL and first_export.messages[2].tool_call_id == "c1"
    times = [message.at for conversation in exported.conversations for message in conversation.messages]
    assert times == sorted(times)


async def test_past_the_cap_the_older_messages_are_left_out_and_it_says_so(
    store_url: str, new_id: Callable[[], int]
) -> None:
    user = new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.current_conversation(user)
            for index in range(10):
                await store.append(conversation, said(f"message {index}"), user)
            cap = 3 * (len(b'"message 0"') + MESSAGE_OVERHEAD)  # as JSON writes it, quotes and all
            exported = await store.exports.of_user(user, user, max_bytes=cap, page=2)
            lonely = new_id()
            nothing = await store.exports.of_user(lonely, lonely, max_bytes=cap)
    assert exported.cut
    assert [message.content for message in exported.conversations[0].messages] == [
        "message 7",
        "message 8",
        "message 9",
    ]
    assert nothing.messages == 0 and not nothing.cut


def test_a_message_counts_as_json_and_markdown_grow_it_so_neither_file_passes_the_cap_by_much() -> None:
    at = datetime(2026, 12, 4, tzinfo=UTC)
    controls = ExportedMessage("user", "\x01" * 1000, None, None, at)  # JSON writes each as \u0001
    lines = ExportedMessage("user", "\n" * 1000, None, None, at)  # Markdown quotes each line with "> "
    assert size(controls) >= len(json.dumps(controls.content)) and size(lines) >= 3000
