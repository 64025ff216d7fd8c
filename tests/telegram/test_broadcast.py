"""The broadcast sender in process, on a real SQLite file and the fake Bot API: a sender whose broadcast another
replica took over stops, and the other finishes it; a database that fails mid-broadcast (its table renamed away)
interrupts it, and it resumes once the database is back, each user getting it once (but the one in flight)."""

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import insert, update
from sqlalchemy.engine import Connection
from structlog.testing import capture_logs
from telegram import Bot

from host.service import Broadcasting
from host.service import broadcasts as service_broadcasts
from host.storage import ConversationStore
from host.storage.models import Broadcast, User, utcnow
from host.telegram import broadcast
from host.telegram.broadcast import Sender
from tests.peers.telegram_server import FakeBotAPI

pytestmark = pytest.mark.anyio

USERS = range(1, 121)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/mcpbot.db"


@pytest.fixture
async def store(url: str) -> AsyncIterator[ConversationStore]:
    async with ConversationStore.open(url) as opened:
        rows = [{"id": user, "first_seen": utcnow(), "preferences": {}} for user in USERS]
        await opened.transactions.write("add users", lambda connection: connection.execute(insert(User), rows))
        yield opened


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leases renewed, and broadcasts looked for, every tenth of a second."""
    monkeypatch.setattr(service_broadcasts, "RENEW_SECONDS", 0.1)
    monkeypatch.setattr(broadcast, "POLL_SECONDS", 0.1)


def received(api: FakeBotAPI) -> Counter[int]:
    return Counter(sent["chat_id"] for sent in api.sent())


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait for a condition that no Bot API call announces (a log line, a row), checking every 20 ms."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - a log line or a row announces nothing to wait on
            await anyio.sleep(0.02)


async def test_a_sender_whose_broadcast_was_taken_over_stops_and_the_other_finishes_it(
    api: FakeBotAPI, bot: Bot, store: ConversationStore, url: str
) -> None:
    first = Broadcasting(store)
    broadcast_id = (await store.broadcasts.create("hello", by=None))[0]
    with capture_logs() as logs, anyio.fail_after(30):
        async with ConversationStore.open(url) as other_store, anyio.create_task_group() as tasks:
            tasks.start_soon(Sender(first, bot, 30, alone=False).run)
            await api.wait_for(lambda: len(api.sent()) >= 10)

            def lapse(connection: Connection) -> None:  # as if the first had stalled past its lease
                connection.execute(update(Broadcast).values(lease_until=utcnow() - timedelta(seconds=1)))

            taken = None
            while taken is None:  # the first renews every 0.1 s: a renewal between the two undoes the lapse
                await store.transactions.write("lapse the lease", lapse)
                taken = await other_store.broadcasts.claim(other_store.owner, alone=False)
            assert taken.id == broadcast_id
            await until(lambda: any(log["event"] == "broadcast_taken_over" for log in logs))
            stopped_at = len(api.sent())
            tasks.start_soon(Sender(Broadcasting(other_store), bot, 30, alone=False).run)
            await api.wait_for(lambda: set(received(api)) == set(USERS), timeout=15)
            await until(lambda: any(log["event"] == "broadcast_finished" for log in logs))
            tasks.cancel_scope.cancel()
    assert stopped_at < len(USERS)
    assert [user for user, count in received(api).items() if count > 1] in ([], [stopped_at], [stopped_at + 1])
    progress = await store.broadcasts.progress(broadcast_id)
    assert progress is not None and (progress.finished, progress.sent) == (True, len(USERS))


async def test_a_database_that_fails_mid_broadcast_interrupts_it_until_it_is_back(
    api: FakeBotAPI, bot: Bot, store: ConversationStore, tmp_path: Path
) -> None:
    broadcast_id = (await store.broadcasts.create("hello", by=None))[0]
    with capture_logs() as logs, anyio.fail_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(Sender(Broadcasting(store), bot, 30, alone=False).run)
            await api.wait_for(lambda: len(api.sent()) >= 10)
            with sqlite3.connect(tmp_path / "mcpbot.db") as database:
                database.execute("ALTER TABLE broadcasts RENAME TO broadcasts_away")
            await until(lambda: any(log["event"] == "broadcast_interrupted" for log in logs))  # a mark failed
            with sqlite3.connect(tmp_path / "mcpbot.db") as database:
                database.execute("ALTER TABLE broadcasts_away RENAME TO broadcasts")
            await api.wait_for(lambda: set(received(api)) == set(USERS), timeout=15)
            await until(lambda: any(log["event"] == "broadcast_finished" for log in logs))
            tasks.cancel_scope.cancel()
    assert len([user for user, count in received(api).items() if count > 1]) <= 1
    progress = await store.broadcasts.progress(broadcast_id)
    assert progress is not None and (progress.finished, progress.sent) == (True, len(USERS))
