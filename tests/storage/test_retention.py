"""RETENTION_DAYS: messages older than the retention are deleted (in batches), the newer ones and what the model
sees of them stay, and conversations ended by /reset disappear once empty. SQLite file and PostgreSQL."""

from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest
from sqlalchemy import func, select, update

from host.storage import ConversationStore, StoredMessage
from host.storage.models import Conversation, Message, utcnow
from host.storage.usage import Spent

pytestmark = pytest.mark.anyio


def said(text: str, role: str = "user") -> StoredMessage:
    return StoredMessage(role=role, content=text, tool_calls=None, tool_call_id=None, token_count=5)  # type: ignore[arg-type]


async def age(store: ConversationStore, conversation: int, days: int) -> None:
    """Make the conversation's messages (and its reset, if any) `days` old, as time would."""
    then = utcnow() - timedelta(days=days)
    async with store.engine.begin() as connection:
        await connection.execute(update(Message).where(Message.conversation_id == conversation).values(created_at=then))
        await connection.execute(
            update(Conversation)
            .where(Conversation.id == conversation, Conversation.reset_at.is_not(None))
            .values(reset_at=then)
        )


async def test_old_messages_go_and_new_ones_stay(store_url: str, new_id: Callable[[], int]) -> None:
    chat, other = new_id(), new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            old = await store.current_conversation(chat)
            for index in range(7):
                await store.append(old, said(f"old {index}"))
            await age(store, old, days=40)
            await store.reset(chat)  # ended 40 days ago, below
            current = await store.current_conversation(chat)
            await store.append(current, said("this week"))
            kept = await store.current_conversation(other)
            await store.append(kept, said("ten days ago"))
            await age(store, kept, days=10)
            await age(store, old, days=40)

            deleted = await store.forget_messages(utcnow() - timedelta(days=30), batch=3)

            window = await store.window(current, max_messages=50, max_tokens=1000)
            other_window = await store.window(kept, max_messages=50, max_tokens=1000)
            async with store.engine.connect() as connection:
                conversations = await connection.scalar(
                    select(func.count()).select_from(Conversation).where(Conversation.chat_id.in_([chat, other]))
                )
    assert deleted == 7  # in batches of 3: 3, 3, 1
    assert [message.content for message in window] == ["this week"]
    assert [message.content for message in other_window] == ["ten days ago"]
    assert conversations == 2  # the emptied, reset one is gone


async def test_forgetting_a_user_leaves_no_row_of_theirs_and_every_row_of_others(
    store_url: str, new_id: Callable[[], int]
) -> None:
    user, other, group = new_id(), new_id(), -new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            for chat, author in ((user, user), (other, other), (group, user), (group, other)):
                conversation = await store.begin_turn(chat, 0, said(f"from {author} in {chat}"), author)
                assert conversation is not None
                await store.append(conversation, said("an answer", role="assistant"))
            await store.set_preferences(user, 0, temperature=1.5)
            await store.set_preferences(other, 0, temperature=0.5)
            await store.reset(user)  # an older, ended conversation goes too
            for someone in (user, other):
                await store.usage.add(someone, "2026-12-04", Spent(tokens=10, turns=1))
                await store.audit.record(someone, "tool_call", server="s", tool="t")
            await store.audit.record(None, "block", user)  # an admin's action on them stays, like the blocklist
            await store.audit.record(user, "broadcast")  # and so do their own actions as an admin
            deleted = await store.forget_user(user)
            audit = [(entry.actor, entry.action) for entry in await store.audit.recent(1000)]
            assert await store.usage.of_user(user, "2026-12-04") == Spent()
            assert (await store.usage.of_user(other, "2026-12-04")).tokens == 10
            assert (user, "tool_call") not in audit and (other, "tool_call") in audit and (None, "block") in audit
            assert (user, "broadcast") in audit
            user_window = await store.window(await store.current_conversation(user), max_messages=10, max_tokens=999)
            other_window = await store.window(await store.current_conversation(other), max_messages=10, max_tokens=999)
            group_window = await store.window(await store.current_conversation(group), max_messages=10, max_tokens=999)
            assert (await store.preferences(user)).temperature is None
            assert (await store.preferences(other)).temperature == 0.5
    assert deleted == 3  # their question and its answer in private, their message in the group
    assert user_window == []
    assert [m.content for m in other_window] == [f"from {other} in {other}", "an answer"]
    assert [m.content for m in group_window] == ["an answer", f"from {other} in {group}", "an answer"]
