"""Broadcasts end to end: `mcpbot run` against the fake Bot API (with Telegram's flood limit of 30 messages in any
rolling second) on a real SQLite file. A broadcast to 500 users never trips the limit and reaches each once; it
survives a crash halfway without sending anyone a second message (but the one in flight); users who blocked the bot
are skipped, counted and left out of the next one; 429, refusals and network failures end as they should; only
admins and the admin API's token may broadcast; the audit log holds each broadcast and its counts."""

import json
import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import insert

from host.storage import ConversationStore
from host.storage.models import User, utcnow
from host.telegram.admin_api import MAX_BODY_BYTES
from host.telegram.broadcast import FLOOD_ATTEMPTS, NETWORK_ATTEMPTS
from tests.conftest import free_port
from tests.peers.openai_server import ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

ADMIN = 7
TOKEN = "0123456789abcdef0123456789abcdef"
TELEGRAM_PER_SECOND = 30


def add_users(folder: Path, user_ids: range) -> None:
    """Users the bot knows (as if each had written), in the database the bot will open."""

    async def add() -> None:
        async with ConversationStore.open(f"sqlite+aiosqlite:///{folder}/data/mcpbot.db") as store:
            rows = [{"id": user, "first_seen": utcnow(), "preferences": {}} for user in user_ids]
            await store.transactions.write("add users", lambda connection: connection.execute(insert(User), rows))

    anyio.run(add)


def audit(folder: Path) -> list[tuple[str, int, dict[str, Any]]]:
    with sqlite3.connect(folder / "data" / "mcpbot.db") as database:
        rows = database.execute("SELECT action, subject, detail FROM audit_log ORDER BY id").fetchall()
    return [(action, subject, json.loads(detail)) for action, subject, detail in rows]


class AdminAPI:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api/admin"

    def broadcast(self, body: Any, token: str | None = TOKEN, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.post(f"{self.url}/broadcast", json=body, headers=headers, timeout=30, **kwargs)

    def progress(self, broadcast_id: int) -> httpx.Response:
        return httpx.get(
            f"{self.url}/broadcasts/{broadcast_id}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def finished(self, broadcast_id: int) -> bool:
        return bool(self.progress(broadcast_id).json()["finished"])


def api_bot(api: FakeBotAPI, model: ScriptedModelServer, folder: Path, **env: str) -> tuple[BotProcess, AdminAPI]:
    port = free_port()
    settings = {"METRICS_PORT": str(port), "ADMIN_API_TOKEN": TOKEN, "ADMIN_USER_IDS": str(ADMIN), **env}
    return BotProcess(api, model, folder, env=settings), AdminAPI(port)


def sends(api: FakeBotAPI, users: range) -> Counter[int]:
    """Messages each of `users` got."""
    return Counter(
        sent["chat_id"] for sent in api.sent() if sent["method"] == "sendMessage" and sent["chat_id"] in users
    )


def peak_per_second(times: list[float]) -> int:
    """The most sends within any rolling second."""
    times = sorted(times)
    start, peak = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def test_a_broadcast_to_500_users_never_trips_the_flood_limit(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    users = range(1000, 1500)
    add_users(tmp_path, users)
    api.flood_limit(per_second=TELEGRAM_PER_SECOND)
    bot, admin_api = api_bot(api, model, tmp_path, BROADCAST_PER_SECOND=str(TELEGRAM_PER_SECOND))
    with bot:
        started = admin_api.broadcast({"text": "Maintenance tonight <b>22:00</b> & later"})
        bot.wait_until(lambda: len(sends(api, users)) == len(users), timeout=40)
        bot.wait_until(lambda: admin_api.finished(1), timeout=10)
        progress = admin_api.progress(1).json()
    assert (started.status_code, started.json()) == (202, {"id": 1, "recipients": 500})
    assert api.flood_violations == 0
    assert set(sends(api, users).values()) == {1}
    assert api.texts(1000) == ["Maintenance tonight <b>22:00</b> & later"]  # plain text, as written
    times = [sent["at"] for sent in api.sent() if sent["chat_id"] in users]
    took, peak = max(times) - min(times), peak_per_second(times)
    assert peak <= TELEGRAM_PER_SECOND and took < 500 / TELEGRAM_PER_SECOND * 1.5  # measured: 17.6 s, 29 a second
    assert progress == {
        "id": 1, "recipients": 500, "pending": 0, "sent": 500, "failed": 0, "skipped": 0, "finished": True,
    }  # fmt: skip
    assert audit(tmp_path) == [
        ("broadcast", 1, {"recipients": 500}),
        ("broadcast_finished", 1, {"sent": 500, "failed": 0, "skipped": 0}),
    ]
    assert "Maintenance" not in bot.log


def test_a_broadcast_survives_a_crash_halfway_and_nobody_gets_it_twice(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    users = range(2000, 2120)
    add_users(tmp_path, users)
    bot, admin_api = api_bot(api, model, tmp_path, BROADCAST_PER_SECOND="30")
    with bot:
        assert admin_api.broadcast({"text": "once only"}).status_code == 202
        bot.wait_until(lambda: len(sends(api, users)) >= 60, timeout=20)
        bot.stop(signal.SIGKILL)
        before = sum(sends(api, users).values())
        assert before < len(users)
        bot.start()
        bot.wait_until(lambda: len(sends(api, users)) == len(users), timeout=30)
        bot.wait_until(lambda: admin_api.finished(1), timeout=10)
        progress = admin_api.progress(1).json()
    twice = [user for user, count in sends(api, users).items() if count > 1]
    assert len(twice) <= 1  # the one in flight when the process died
    assert (progress["sent"], progress["pending"]) == (120, 0)


def test_users_who_blocked_the_bot_are_skipped_counted_and_left_out_next_time(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    users = range(1, 6)
    add_users(tmp_path, users)
    api.block_bot(2)
    api.block_bot(4)
    bot, _ = api_bot(api, model, tmp_path)
    with bot:
        api.push_message(3, "/broadcast I am no admin")
        bot.wait_until(lambda: len(api.texts(3)) == 1)
        api.push_message(ADMIN, "/broadcast")
        api.push_message(ADMIN, "/broadcast Hello\neveryone")
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 3, timeout=20)
        api.push_message(ADMIN, "/broadcast And again")
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 5, timeout=20)
        api.block_bot(ADMIN)  # the admin cannot hear the counts of the next one: only logged
        api.push_message(ADMIN, "/broadcast Once more")
        bot.wait_until(lambda: '"broadcast_report_not_sent"' in bot.log, timeout=20)
    assert "Commands:" in api.texts(3)[0] and "/broadcast" not in api.texts(3)[0]
    assert api.texts(ADMIN) == [
        "Nothing was sent: the text to broadcast is empty. Usage: /broadcast TEXT",
        "Broadcast 1 to 5 users started; I will tell you how many got it when it is done.",
        "Broadcast 1: sent 3, failed 0, skipped 2 (they blocked the bot, or an admin blocked them)",
        "Broadcast 2 to 3 users started; I will tell you how many got it when it is done.",
        "Broadcast 2: sent 3, failed 0, skipped 0 (they blocked the bot, or an admin blocked them)",
    ]
    assert api.texts(1) == ["Hello\neveryone", "And again", "Once more"]
    assert api.texts(3)[1:] == ["Hello\neveryone", "And again", "Once more"]
    assert api.texts(2) == [] and api.texts(4) == []
    assert [call.params["chat_id"] for call in api.calls_of("sendMessage")].count(2) == 1  # not tried again
    assert [(action, subject, detail) for action, subject, detail in audit(tmp_path)] == [
        ("broadcast", 1, {"recipients": 5}),
        ("broadcast_finished", 1, {"sent": 3, "failed": 0, "skipped": 2}),
        ("broadcast", 2, {"recipients": 3}),
        ("broadcast_finished", 2, {"sent": 3, "failed": 0, "skipped": 0}),
        ("broadcast", 3, {"recipients": 3}),
        ("broadcast_finished", 3, {"sent": 3, "failed": 0, "skipped": 0}),
    ]


def test_429_is_waited_out_and_refusals_and_network_failures_fail_only_their_recipient(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    users = range(1, 4)
    add_users(tmp_path, users)
    bot, admin_api = api_bot(api, model, tmp_path)
    with bot:
        api.flood("sendMessage", retry_after=1)  # user 1: waited out, then
        api.fail("sendMessage", 400, "Bad Request: chat not found")  # refused: failed
        api.drop("sendMessage", times=2)  # user 2: two network failures, then sent
        assert admin_api.broadcast({"text": "first"}).status_code == 202
        bot.wait_until(lambda: admin_api.finished(1), timeout=20)
        api.drop("sendMessage", times=NETWORK_ATTEMPTS)  # user 1: every attempt fails
        migrated = {"migrate_to_chat_id": -1001}  # user 2: an error that is neither a refusal nor the network's
        api.fail("sendMessage", 400, "Bad Request: group chat was upgraded to a supergroup chat", parameters=migrated)
        assert admin_api.broadcast({"text": "second"}).status_code == 202
        bot.wait_until(lambda: admin_api.finished(2), timeout=30)
        api.flood("sendMessage", times=FLOOD_ATTEMPTS, retry_after=1)  # user 1: never let through: failed
        assert admin_api.broadcast({"text": "third"}).status_code == 202
        bot.wait_until(lambda: admin_api.finished(3), timeout=30)
        first, second, third = (admin_api.progress(number).json() for number in (1, 2, 3))
    calls = api.calls_of("sendMessage")
    flooded = next(call for call in calls if call.status == 429)
    assert calls[calls.index(flooded) + 1].at - flooded.at >= 1.0
    assert (first["sent"], first["failed"], second["sent"], second["failed"]) == (2, 1, 1, 2)
    assert (third["sent"], third["failed"]) == (2, 1)
    assert api.texts(1) == [] and api.texts(2) == ["first", "third"] and api.texts(3) == ["first", "second", "third"]
    assert bot.log.count('"broadcast_flood_wait"') == FLOOD_ATTEMPTS
    assert bot.log.count('"broadcast_send_failed"') == 4


def test_only_the_token_may_broadcast_and_bad_requests_change_nothing(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    add_users(tmp_path, range(1, 3))
    bot, admin_api = api_bot(api, model, tmp_path)
    with bot:
        without = admin_api.broadcast({"text": "hi"}, token=None)
        wrong = admin_api.broadcast({"text": "hi"}, token="f" * 32)
        not_json = httpx.post(
            f"{admin_api.url}/broadcast", content=b"{nope", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        headers = {"Authorization": f"Bearer {TOKEN}"}
        deep = httpx.post(f"{admin_api.url}/broadcast", content=b"[" * 60_000, headers=headers, timeout=30)
        big = httpx.post(f"{admin_api.url}/broadcast", content=b" " * (MAX_BODY_BYTES + 1), headers=headers, timeout=30)
        no_text = admin_api.broadcast({"message": "hi"})
        empty = admin_api.broadcast({"text": "  \n "})
        too_long = admin_api.broadcast({"text": "x" * 4097})
        unknown = admin_api.progress(1)
        huge = admin_api.progress(2**64)
        started = admin_api.broadcast({"text": "x" * 4096})
        bot.wait_until(lambda: admin_api.finished(1), timeout=20)
    assert without.status_code == 401 and wrong.status_code == 403
    assert not_json.status_code == 400 and no_text.status_code == 400 and deep.status_code == 400
    assert big.status_code == 413
    assert (empty.status_code, empty.json()) == (400, {"error": "the text to broadcast is empty"})
    assert too_long.status_code == 400 and "4096" in too_long.json()["error"]
    assert unknown.status_code == 404 and huge.status_code == 404
    assert started.json() == {"id": 1, "recipients": 2}  # the refused ones created nothing
    assert api.texts(1) == ["x" * 4096]
    assert [action for action, _subject, _detail in audit(tmp_path)] == ["broadcast", "broadcast_finished"]
