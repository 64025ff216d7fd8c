"""The conversation store on a real SQLite file and on this machine's PostgreSQL: what the bot's users notice."""

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from host.errors import StorageError
from host.storage import ConversationStore, StoredMessage
from host.storage.models import utcnow

pytestmark = pytest.mark.anyio

NewId = Callable[[], int]


def user(text: str, tokens: int = 10) -> StoredMessage:
    return StoredMessage(role="user", content=text, tool_calls=None, tool_call_id=None, token_count=tokens)


def assistant(text: str | None, tokens: int = 10, calls: list[str] | None = None) -> StoredMessage:
    tool_calls = None
    if calls:
        tool_calls = [
            {"id": call, "type": "function", "function": {"name": "fs__read", "arguments": "{}"}} for call in calls
        ]
    return StoredMessage(role="assistant", content=text, tool_calls=tool_calls, tool_call_id=None, token_count=tokens)


def tool(call: str, text: str, tokens: int = 10) -> StoredMessage:
    return StoredMessage(role="tool", content=text, tool_calls=None, tool_call_id=call, token_count=tokens)


def texts(window: list[StoredMessage]) -> list[str | None]:
    return [message.content for message in window]


async def append_all(store: ConversationStore, conversation: int, messages: list[StoredMessage]) -> None:
    for message in messages:
        await store.append(conversation, message)


async def test_history_survives_a_restart(store_url: str, new_id: NewId) -> None:
    chat, person = new_id(), new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.current_conversation(chat)
            await store.append(conversation, user("what is in notes.txt?"), user_id=person)
            await store.append(conversation, assistant(None, calls=["call_1"]))
            await store.append(conversation, tool("call_1", "buy milk"))
            await store.append(conversation, assistant("It says: buy milk."))
        async with ConversationStore.open(store_url) as store:
            assert await store.current_conversation(chat) == conversation
            window = await store.window(conversation, max_messages=50, max_tokens=8000)
    assert texts(window) == ["what is in notes.txt?", None, "buy milk", "It says: buy milk."]
    assert [message.role for message in window] == ["user", "assistant", "tool", "assistant"]
    assert window[1].tool_calls is not None and window[1].tool_calls[0]["id"] == "call_1"
    assert window[2].tool_call_id == "call_1"
    ids = [message.id for message in window]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids) and len(set(ids)) == 4
    assert all(message.created_at is not None and message.created_at.utcoffset() is not None for message in window)


async def test_reset_starts_a_fresh_conversation(store_url: str, new_id: NewId) -> None:
    chat = new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            old = await store.current_conversation(chat)
            await store.append(old, user("remember: my name is Ada"))
            new = await store.reset(chat)
            assert new != old
            assert await store.current_conversation(chat) == new
            assert await store.window(new, max_messages=50, max_tokens=8000) == []
            await store.append(new, user("what is my name?"))
            newer = await store.reset(chat)
        async with ConversationStore.open(store_url) as store:
            assert await store.current_conversation(chat) == newer
            assert texts(await store.window(new, max_messages=50, max_tokens=8000)) == ["what is my name?"]
            assert await store.window(newer, max_messages=50, max_tokens=8000) == []


async def test_concurrent_resets_leave_one_open_conversation(store_url: str, new_id: NewId) -> None:
    chat = new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            results: list[int] = []

            async def reset() -> None:
                results.append(await store.reset(chat))

            async with anyio.create_task_group() as group:
                for _ in range(3):
                    group.start_soon(reset)
            assert await store.current_conversation(chat) == max(results)


async def test_first_messages_of_a_chat_land_in_one_conversation(store_url: str, new_id: NewId) -> None:
    chat = new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            seen: list[int] = []

            async def open_conversation() -> None:
                seen.append(await store.current_conversation(chat))

            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(open_conversation)
    assert len(set(seen)) == 1


async def test_chats_and_topics_are_separate(store_url: str, new_id: NewId) -> None:
    chat, other = new_id(), new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            general = await store.current_conversation(chat)
            topic = await store.current_conversation(chat, topic_id=7)
            elsewhere = await store.current_conversation(other)
            assert len({general, topic, elsewhere}) == 3
            await store.append(general, user("in the general topic"))
            await store.append(topic, user("in topic 7"))
            await store.reset(chat, topic_id=7)
            assert await store.current_conversation(chat) == general
            assert texts(await store.window(general, max_messages=50, max_tokens=8000)) == ["in the general topic"]
            assert await store.window(elsewhere, max_messages=50, max_tokens=8000) == []


async def test_window_keeps_the_newest_within_both_limits(store_url: str, new_id: NewId) -> None:
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.current_conversation(new_id())
            await append_all(store, conversation, [user(f"m{index}", tokens=10) for index in range(10)])
            by_count = await store.window(conversation, max_messages=4, max_tokens=8000)
            by_tokens = await store.window(conversation, max_messages=50, max_tokens=35)
            exact = await store.window(conversation, max_messages=50, max_tokens=30)
            nothing = await store.window(conversation, max_messages=50, max_tokens=9)
    assert texts(by_count) == ["m6", "m7", "m8", "m9"]
    assert texts(by_tokens) == ["m7", "m8", "m9"]
    assert texts(exact) == ["m7", "m8", "m9"]
    assert nothing == []


async def test_window_never_splits_a_tool_call_from_its_results(store_url: str, new_id: NewId) -> None:
    history = [
        user("compare a.txt and b.txt", tokens=10),
        assistant(None, tokens=20, calls=["a", "b"]),
        tool("a", "contents of a", tokens=100),
        tool("b", "contents of b", tokens=100),
        assistant("They differ in one line.", tokens=10),
        user("thanks", tokens=5),
    ]
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.current_conversation(new_id())
            await append_all(store, conversation, history)
            whole = await store.window(conversation, max_messages=50, max_tokens=8000)
            cut_by_count = await store.window(conversation, max_messages=3, max_tokens=8000)
            cut_by_tokens = await store.window(conversation, max_messages=50, max_tokens=200)
    assert texts(whole) == [message.content for message in history]
    # three rows reach back into the middle of the tool results: the orphan result is dropped
    assert texts(cut_by_count) == ["They differ in one line.", "thanks"]
    # 235 tokens would be needed for the group: it goes whole, and nothing older is taken instead
    assert texts(cut_by_tokens) == ["They differ in one line.", "thanks"]


async def test_an_unanswered_tool_call_stays_out_of_the_window(store_url: str, new_id: NewId) -> None:
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.current_conversation(new_id())
            await append_all(
                store,
                conversation,
                [user("read both"), assistant(None, calls=["a", "b"]), tool("a", "only a came back"), user("well?")],
            )
            window = await store.window(conversation, max_messages=50, max_tokens=8000)
    assert texts(window) == ["read both", "well?"]


async def test_concurrent_appends_keep_each_conversations_order(store_url: str, new_id: NewId) -> None:
    chats = [new_id() for _ in range(6)]
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            conversations = [await store.current_conversation(chat) for chat in chats]

            async def write(index: int, conversation: int) -> None:
                for turn in range(15):
                    await store.append(conversation, user(f"{index}-{turn}"))

            async with anyio.create_task_group() as group:
                for index, conversation in enumerate(conversations):
                    group.start_soon(write, index, conversation)
            windows = [await store.window(c, max_messages=50, max_tokens=8000) for c in conversations]
    for index, window in enumerate(windows):
        assert texts(window) == [f"{index}-{turn}" for turn in range(15)]


async def test_an_update_is_claimed_once_also_after_a_restart(store_url: str, new_id: NewId) -> None:
    update, racing = new_id(), new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            assert await store.claim_update(update) is True
            assert await store.claim_update(update) is False
            claims: list[bool] = []

            async def claim() -> None:
                claims.append(await store.claim_update(racing))

            async with anyio.create_task_group() as group:
                for _ in range(5):
                    group.start_soon(claim)
        async with ConversationStore.open(store_url) as store:
            assert await store.claim_update(update) is False
            assert await store.claim_update(racing) is False
    assert sorted(claims) == [False, False, False, False, True]


async def test_bad_writes_are_storage_errors(store_url: str, new_id: NewId) -> None:
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            with pytest.raises(StorageError, match="could not store the message"):
                await store.append(-new_id(), user("to a conversation that does not exist"))
            conversation = await store.current_conversation(new_id())
            bad: Any = StoredMessage(role="robot", content="x", tool_calls=None, tool_call_id=None, token_count=1)  # type: ignore[arg-type]
            with pytest.raises(StorageError, match="could not store the message"):
                await store.append(conversation, bad)
            assert await store.healthy() is True


async def test_an_unreachable_database_is_a_storage_error() -> None:
    with anyio.fail_after(20), pytest.raises(StorageError, match="could not migrate the database"):
        async with ConversationStore.open("postgresql+asyncpg://root@127.0.0.1:1/nothing"):
            pass


async def test_old_claims_are_forgotten_and_new_ones_kept(store_url: str, new_id: NewId) -> None:
    old, recent = new_id(), new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            await store.claim_update(old)
            cutoff = utcnow()
            await store.claim_update(recent)
            assert await store.forget_updates(cutoff) >= 1
            assert await store.claim_update(old) is True  # forgotten: it may be claimed again
            assert await store.claim_update(recent) is False


async def test_a_turn_with_a_claimed_update_stores_nothing(store_url: str, new_id: NewId) -> None:
    chat, update = new_id(), new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            first = await store.begin_turn(chat, 0, user("once"), None, update_id=update)
            assert first is not None
            assert await store.begin_turn(chat, 0, user("once"), None, update_id=update) is None
            assert texts(await store.window(first, max_messages=50, max_tokens=8000)) == ["once"]
