"""Crash recovery end to end: `mcpbot run` killed with SIGKILL during turns, then started again, on SQLite and on
PostgreSQL. The unanswered messages are answered once (or, when too old, get a short note), the preview the crash
left in a group says it was cut off, and a further restart sends nothing again."""

import signal
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine
from telegram import Bot

from host.app import open_app
from host.settings import Settings
from host.storage import ConversationStore, StoredMessage
from host.storage.models import Message, PendingReply, utcnow
from host.storage.pending import Orphan
from host.telegram import recovery as recovery_module
from host.telegram.frontend import FrontEnd
from host.telegram.recovery import CUT_OFF, MAX_ATTEMPTS, Recovery
from tests.peers.openai_server import Hang, Reply, ScriptedModelServer, last_user_text
from tests.peers.telegram_server import FakeBotAPI
from tests.stores import backend, databases, empty_url
from tests.telegram.botrun import BotProcess

__all__ = ["backend", "databases", "empty_url"]  # the fixtures: a fresh SQLite file, or a new PostgreSQL database

GROUP = -100
PRIVATE = 42


def previews_recorded(url: str) -> list[int | None]:
    """The preview message ids the bot recorded for the replies it owes, read from its database."""

    async def read() -> list[int | None]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return list((await connection.scalars(select(PendingReply.preview_message_id))).all())
        finally:
            await engine.dispose()

    return anyio.run(read)


def claimed(bot: BotProcess) -> list[int]:
    """How many unanswered messages each start of the bot claimed, from its log."""
    return [event["count"] for event in bot.log_events() if event.get("event") == "unanswered_claimed"]


def backdate(url: str, text: str, age: timedelta) -> None:
    async def write() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    update(Message).where(Message.content == text).values(created_at=utcnow() - age)
                )
        finally:
            await engine.dispose()

    anyio.run(write)


def test_turns_cut_by_a_crash_are_answered_once_after_the_restart(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path, empty_url: str
) -> None:
    url = empty_url
    # The first requests never finish: the group's streams some text (a preview appears), the private one nothing.
    model.always(
        lambda body: (
            Reply(text="The answer begins like this, and", chunks=4, hang_after=True)
            if "group" in last_user_text(body)
            else Hang()
        )
    )
    bot = BotProcess(api, model, tmp_path, database_url=url)
    with bot:
        api.push_message(GROUP, "@fake_bot a group question", chat_type="supergroup", user_id=5)
        api.push_message(PRIVATE, "an old question")
        bot.wait_until(lambda: len(model.requests) == 2 and previews_recorded(url).count(None) == 1, timeout=20)
        assert api.texts(GROUP) == ["The answer begins like this, and"]  # the preview, as if it were the answer
        assert bot.stop(signal.SIGKILL) == -signal.SIGKILL
        backdate(url, "an old question", timedelta(hours=1))  # older than RECOVER_WINDOW_SECONDS (600)

        model.always(lambda body: Reply(text=f"The whole answer to: {last_user_text(body)}"))
        bot.start()
        bot.wait_until(lambda: len(api.texts(GROUP)) == 2 and len(api.texts(PRIVATE)) == 1, timeout=20)
        assert api.texts(GROUP) == [CUT_OFF, "The whole answer to: a group question"]
        note = api.texts(PRIVATE)[0]
        assert note.startswith("⚠️ I was restarted and could not answer your message from ") and "again" in note
        assert [last_user_text(body) for body in model.bodies[2:]] == ["a group question"]  # asked once more
        assert bot.stop() == 0
        assert previews_recorded(url) == []  # nothing is owed any more

        bot.start()  # and again: nothing is claimed, nothing is sent twice
        bot.wait_until(lambda: len(claimed(bot)) == 3)  # one line a start
        assert bot.stop() == 0
    assert claimed(bot) == [0, 2, 0]
    assert len(api.texts(GROUP)) == 2 and len(api.texts(PRIVATE)) == 1 and len(model.requests) == 3
    answer = next(sent for sent in api.sent(GROUP) if "whole answer" in sent["params"]["text"])
    assert answer["params"]["reply_parameters"]["message_id"] > 0  # it answers the question asked


@pytest.mark.anyio
async def test_a_stored_answer_is_delivered_as_it_is_and_a_message_that_keeps_crashing_gets_the_note(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/data/mcpbot.db"
    config = tmp_path / "mcp_servers.json"
    config.write_text('{"mcpServers": {}}')
    route = {"message_id": 5, "private": True}
    with anyio.fail_after(30):
        async with ConversationStore.open(url) as dead:  # the process that crashed, twice for chat 2
            conversation = await dead.begin_turn(
                1, 0, StoredMessage("user", "q1", None, None, 3), 1, update_id=1, route=route
            )
            assert conversation is not None
            await dead.append(conversation, StoredMessage("assistant", "the stored **answer**", None, None, 3))
            await dead.begin_turn(2, 0, StoredMessage("user", "q2", None, None, 3), 2, update_id=2, route=route)
        for _ in range(MAX_ATTEMPTS):  # recoveries that began and crashed again
            async with ConversationStore.open(url) as crashed:
                assert [o.update_id for o in await crashed.claim_orphans(lapsed_only=False)] == [1, 2]
        settings = Settings(_env_file=None, database_url=url, llm_base_url=model.base_url, mcp_servers_config=config)
        async with (
            open_app(settings) as app,
            Bot(api.token, base_url=api.base_url) as bot,
        ):
            recovery = Recovery(FrontEnd(app, bot), alone=True)
            owed: list[Orphan] = []
            await recovery.start(owed.append)
            for orphan in owed:
                await recovery.handle(orphan)
            assert await app.store.claim_orphans(lapsed_only=False) == []  # nothing is owed any more
    assert api.texts(1) == ["the stored answer"]  # delivered, rendered, without asking the model again
    assert len(api.texts(2)) == 1 and api.texts(2)[0].startswith("⚠️ I was restarted and could not answer")
    assert model.requests == []


@pytest.mark.anyio
async def test_a_webhook_replica_takes_over_what_a_dead_one_owed_once_its_lease_lapsed(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery_module, "RENEW_EVERY", 0.05)  # instead of every 60 s
    url = f"sqlite+aiosqlite:///{tmp_path}/data/mcpbot.db"
    config = tmp_path / "mcp_servers.json"
    config.write_text('{"mcpServers": {}}')
    route = {"message_id": 5, "private": True}
    model.always(lambda body: Reply(text=f"answered: {last_user_text(body)}"))
    settings = Settings(_env_file=None, database_url=url, llm_base_url=model.base_url, mcp_servers_config=config)
    with anyio.fail_after(30):
        async with (
            ConversationStore.open(url) as other,  # another replica, alive at first
            open_app(settings) as app,
            Bot(api.token, base_url=api.base_url) as bot,
        ):
            await other.begin_turn(7, 0, StoredMessage("user", "q", None, None, 3), 7, update_id=70, route=route)
            recovery = Recovery(FrontEnd(app, bot), alone=False)
            owed: list[Orphan] = []
            await recovery.start(owed.append)
            assert owed == []  # its lease runs: that replica may be answering it right now
            taken_over = anyio.Event()

            def submit(orphan: Orphan) -> None:
                owed.append(orphan)
                taken_over.set()

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(recovery.keep, submit)
                async with other.engine.begin() as connection:  # it died: nobody renews its lease
                    await connection.execute(update(PendingReply).values(lease_until=utcnow()))
                await taken_over.wait()
                tasks.cancel_scope.cancel()
            await recovery.handle(owed[0])
    assert [o.update_id for o in owed] == [70]
    assert api.texts(7) == ["answered: q"]
