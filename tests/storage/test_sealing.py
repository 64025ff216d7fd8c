"""Message content sealed at rest, on a real SQLite file and this machine's PostgreSQL: a raw look at the database
shows no message text, the store still reads the conversation whole, old clear rows still read, keys rotate, and a
wrong key is a clear error naming SECRET_KEY."""

import secrets
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from host.errors import StorageError
from host.storage import ConversationStore, Sealer, StoredMessage
from host.storage.sealing import MARK
from tests.storage.test_repository import assistant, tool, user

pytestmark = pytest.mark.anyio

NewId = Callable[[], int]
KEY_A = "first-key-" + "a" * 32
KEY_B = "second-key-" + "b" * 32


def a_turn(phrase: str) -> list[StoredMessage]:
    """A user's question, a tool call whose arguments, result and answer all hold the phrase."""
    call = assistant(None, calls=["call_1"])
    assert call.tool_calls is not None
    call.tool_calls[0]["function"]["arguments"] = f'{{"path": "{phrase}.txt"}}'
    return [user(f"please read {phrase}"), call, tool("call_1", f"the file says {phrase}"), assistant(f"It: {phrase}")]


async def raw_database(url: str, store: ConversationStore) -> bytes:
    """Everything an attacker with the database gets: the SQLite file's bytes (with its WAL), or every row of
    every table of PostgreSQL as text."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "")
        return b"".join(part.read_bytes() for part in path.parent.glob(path.name + "*"))
    async with store.engine.connect() as connection:
        rows = []
        for table in ("messages", "conversations", "users", "pending_replies", "processed_updates"):
            rows += (await connection.execute(text(f"SELECT t::text FROM {table} t"))).scalars().all()
    return "\n".join(rows).encode()


async def stored_values(store: ConversationStore, conversation: int) -> list[str | None]:
    """The content column of a conversation as stored, bypassing the store."""
    async with store.engine.connect() as connection:
        found = await connection.execute(
            text("SELECT content FROM messages WHERE conversation_id = :c ORDER BY id"), {"c": conversation}
        )
        return list(found.scalars().all())


async def test_a_sent_phrase_is_not_in_the_raw_database_and_reads_back_whole(empty_url: str, new_id: NewId) -> None:
    phrase = "zebra-" + secrets.token_hex(6)
    chat, update = new_id(), new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url, Sealer(KEY_A)) as store:
            question, *rest = a_turn(phrase)
            conversation = await store.begin_turn(chat, 0, question, new_id(), update_id=update, route={"chat": chat})
            assert conversation is not None
            for message in rest:
                await store.append(conversation, message)
            raw = await raw_database(empty_url, store)
        async with ConversationStore.open(empty_url, Sealer(KEY_A)) as store:  # after a restart
            window = await store.window(conversation, max_messages=50, max_tokens=8000)
            orphans = await store.claim_orphans(lapsed_only=False)
            raw += await raw_database(empty_url, store)
    assert phrase.encode() not in raw and b"please read" not in raw and b"the file says" not in raw
    assert [message.content for message in window] == [
        f"please read {phrase}",
        None,
        f"the file says {phrase}",
        f"It: {phrase}",
    ]
    assert window[1].tool_calls == a_turn(phrase)[1].tool_calls
    assert [(orphan.text, orphan.answer) for orphan in orphans] == [(f"please read {phrase}", f"It: {phrase}")]


async def test_rows_written_in_clear_before_still_read_and_new_ones_are_sealed(empty_url: str, new_id: NewId) -> None:
    chat = new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url) as store:  # before SECRET_KEY was set
            conversation = await store.current_conversation(chat)
            for message in a_turn("old-phrase"):
                await store.append(conversation, message)
        async with ConversationStore.open(empty_url, Sealer(KEY_A)) as store:
            await store.append(conversation, user("new-phrase"))
            window = await store.window(conversation, max_messages=50, max_tokens=8000)
            stored = await stored_values(store, conversation)
            raw = await raw_database(empty_url, store)
    assert [message.content for message in window] == [
        "please read old-phrase",
        None,
        "the file says old-phrase",
        "It: old-phrase",
        "new-phrase",
    ]
    assert window[1].tool_calls == a_turn("old-phrase")[1].tool_calls
    assert stored[0] == "please read old-phrase" and (stored[-1] or "").startswith(MARK)  # not rewritten, new sealed
    assert b"new-phrase" not in raw


async def test_a_rotated_key_reads_old_rows_and_seals_new_ones_with_the_new_key(empty_url: str, new_id: NewId) -> None:
    chat = new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url, Sealer(KEY_A)) as store:
            conversation = await store.current_conversation(chat)
            await append_turn(store, conversation, "under-a")
        rotated = Sealer.from_settings(KEY_B, f"unused-old-key-{'c' * 20}, {KEY_A}")  # as SECRET_KEY_PREVIOUS holds
        async with ConversationStore.open(empty_url, rotated) as store:
            await append_turn(store, conversation, "under-b")
            window = await store.window(conversation, max_messages=50, max_tokens=8000)
            stored = await stored_values(store, conversation)
        async with ConversationStore.open(empty_url, Sealer(KEY_B)) as store:  # KEY_A dropped: its rows are lost
            with pytest.raises(StorageError, match="SECRET_KEY_PREVIOUS"):
                await store.window(conversation, max_messages=50, max_tokens=8000)
            newest = await store.window(conversation, max_messages=4, max_tokens=8000)
    assert [message.content for message in window] == [
        "please read under-a",
        None,
        "the file says under-a",
        "It: under-a",
        "please read under-b",
        None,
        "the file says under-b",
        "It: under-b",
    ]
    assert window[5].tool_calls == a_turn("under-b")[1].tool_calls
    key_a, key_b = Sealer(KEY_A).key_id, Sealer(KEY_B).key_id
    prefixes = [(value or "")[: len(MARK) + 8] for value in stored if value]
    assert prefixes == [f"{MARK}{key_a}"] * 3 + [f"{MARK}{key_b}"] * 3
    assert [message.content for message in newest] == [
        "please read under-b",
        None,
        "the file says under-b",
        "It: under-b",
    ]


async def append_turn(store: ConversationStore, conversation: int, phrase: str) -> None:
    for message in a_turn(phrase):
        await store.append(conversation, message)


async def test_a_wrong_key_is_a_clear_error_naming_secret_key(empty_url: str, new_id: NewId) -> None:
    chat, update = new_id(), new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url, Sealer(KEY_A)) as store:
            conversation = await store.begin_turn(chat, 0, user("hello"), None, update_id=update, route={"c": 1})
            assert conversation is not None
        async with ConversationStore.open(empty_url, Sealer(KEY_B)) as store:
            problem = await store.unreadable_content()
            with pytest.raises(StorageError) as reading:
                await store.window(conversation, max_messages=50, max_tokens=8000)
            with pytest.raises(StorageError) as recovering:
                await store.claim_orphans(lapsed_only=False)
            fresh = await store.reset(chat)  # the chat goes on in a new conversation
            await store.append(fresh, user("after the reset"))
            after = await store.window(fresh, max_messages=50, max_tokens=8000)
        async with ConversationStore.open(empty_url) as store:  # no key at all
            with pytest.raises(StorageError, match="SECRET_KEY") as keyless:
                await store.window(conversation, max_messages=50, max_tokens=8000)
    key_a = Sealer(KEY_A).key_id
    assert key_a is not None
    for message in (problem or "", str(reading.value), str(recovering.value), str(keyless.value)):
        assert "SECRET_KEY" in message and key_a in message and "hello" not in message
    assert [message.content for message in after] == ["after the reset"]


async def test_without_a_key_nothing_reads_as_sealed_by_accident(store_url: str, new_id: NewId) -> None:
    tricky = [f"{MARK}{'0' * 8}:AAAA", "\x01c:looks escaped", "\x01 plain"]
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.current_conversation(new_id())
            for value in tricky:
                await store.append(conversation, user(value))
            window = await store.window(conversation, max_messages=50, max_tokens=8000)
    assert [message.content for message in window] == tricky


def test_an_altered_value_fails_its_check_and_names_no_content() -> None:
    sealer = Sealer(KEY_A)
    sealed = sealer.seal("meet at noon", "content")
    flipped = sealed[:-6] + ("B" if sealed[-6] == "A" else "A") + sealed[-5:]
    with pytest.raises(StorageError, match="authentication") as altered:
        sealer.open(flipped, "content")
    with pytest.raises(StorageError, match="authentication"):
        sealer.open(sealed, "tool_calls")  # a value moved to another column
    assert "noon" not in str(altered.value) and sealer.open(sealed, "content") == "meet at noon"
