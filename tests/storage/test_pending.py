"""Replies owed, as crash recovery sees them, on a real SQLite file and on this machine's PostgreSQL: recorded with
the message, taken over only from a process that is gone, by exactly one claimer, until delivered. And text with
NUL bytes, which PostgreSQL's text type refuses, is stored visibly replaced."""

from collections.abc import Callable

import anyio
import pytest
from sqlalchemy import update

from host.storage import ConversationStore, StoredMessage
from host.storage.models import PendingReply, utcnow
from host.storage.pending import Orphan

pytestmark = pytest.mark.anyio

NewId = Callable[[], int]
ROUTE = {"message_id": 7, "private": False}


def message(role: str, text: str, tool_call_id: str | None = None) -> StoredMessage:
    return StoredMessage(role=role, content=text, tool_calls=None, tool_call_id=tool_call_id, token_count=5)  # type: ignore[arg-type]


async def lapse(store: ConversationStore, update_id: int) -> None:
    """As if the lease's 180 s had passed without a renewal (the process holding it died)."""
    async with store.engine.begin() as connection:
        await connection.execute(
            update(PendingReply).where(PendingReply.update_id == update_id).values(lease_until=utcnow())
        )


async def test_a_reply_owed_by_a_dead_process_is_claimed_by_exactly_one_other(store_url: str, new_id: NewId) -> None:
    chat, update_id = new_id(), new_id()
    with anyio.fail_after(30):
        async with (
            ConversationStore.open(store_url) as dead,
            ConversationStore.open(store_url) as first,
            ConversationStore.open(store_url) as second,
        ):
            await dead.begin_turn(chat, 3, message("user", "are you there?"), 11, update_id=update_id, route=ROUTE)
            await dead.preview_shown(update_id, 99)
            assert await dead.renew_leases() == 1
            assert mine(await first.claim_orphans(), update_id) == []  # its lease runs: its process may be alive
            await lapse(dead, update_id)
            claims: dict[str, list[Orphan]] = {}

            async def claim(name: str, store: ConversationStore) -> None:
                claims[name] = mine(await store.claim_orphans(), update_id)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(claim, "first", first)
                tasks.start_soon(claim, "second", second)
            assert sorted(len(orphans) for orphans in claims.values()) == [0, 1]
            winner, loser = (first, second) if claims["first"] else (second, first)
            assert await winner.renew_leases() == 1
            assert mine(await loser.claim_orphans(), update_id) == []  # the winner's lease runs
            # A poller starting is alone by definition: it takes every reply owed, leases or not.
            taken = mine(await loser.claim_orphans(lapsed_only=False), update_id)
    orphan = [*claims["first"], *claims["second"]][0]
    assert (orphan.chat_id, orphan.topic_id, orphan.user_id, orphan.text) == (chat, 3, 11, "are you there?")
    assert orphan.route == ROUTE and orphan.preview == 99 and orphan.answer is None
    assert orphan.attempts == 1
    assert [o.attempts for o in taken] == [2]  # counted: a message that crashes the bot is not retried forever


def mine(orphans: list[Orphan], update_id: int) -> list[Orphan]:
    """The orphans of this test (PostgreSQL's database is shared by the module's tests)."""
    return [orphan for orphan in orphans if orphan.update_id == update_id]


async def test_an_answer_stored_before_the_crash_comes_with_the_claim(store_url: str, new_id: NewId) -> None:
    chat, update = new_id(), new_id()
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as dead, ConversationStore.open(store_url) as alive:
            conversation = await dead.begin_turn(chat, 0, message("user", "q"), None, update_id=update, route=ROUTE)
            assert conversation is not None
            await dead.append(conversation, StoredMessage("assistant", "", calls, None, 5))
            await dead.append(conversation, message("tool", "result", tool_call_id="c1"))
            await dead.append(conversation, message("assistant", "the answer"))
            orphans = mine(await alive.claim_orphans(lapsed_only=False), update)
            assert [o.answer for o in orphans] == ["the answer"]  # delivered as it is: the model is not asked again
            await alive.reply_delivered(update)
            async with ConversationStore.open(store_url) as restarted:
                assert mine(await restarted.claim_orphans(lapsed_only=False), update) == []


async def test_a_route_needs_an_update_id(store_url: str, new_id: NewId) -> None:
    async with ConversationStore.open(store_url) as store:
        with pytest.raises(ValueError, match="update_id"):
            await store.begin_turn(new_id(), 0, message("user", "q"), None, route=ROUTE)


async def test_nul_bytes_are_stored_as_a_visible_replacement(store_url: str, new_id: NewId) -> None:
    calls = [{"id": "c\x001", "type": "function", "function": {"name": "f", "arguments": '{"a": "x\\u0000y"}'}}]
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            conversation = await store.begin_turn(new_id(), 0, message("user", "a\x00b"), None, update_id=new_id())
            assert conversation is not None
            await store.append(conversation, StoredMessage("assistant", "", calls, None, 5))
            await store.append(conversation, message("tool", "bin\x00ary", tool_call_id="c\x001"))
            window = await store.window(conversation, max_messages=10, max_tokens=100)
    assert [m.content for m in window] == ["a\ufffdb", "", "bin\ufffdary"]
    assert window[1].tool_calls is not None and window[1].tool_calls[0]["id"] == "c\ufffd1"
    assert window[2].tool_call_id == "c\ufffd1"  # the call and its result still belong together
    assert window[1].tool_calls[0]["function"]["arguments"] == '{"a": "x\\u0000y"}'  # an escape is no NUL
