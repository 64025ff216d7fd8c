"""Long polling that survives Telegram: each failure branch of host.telegram.polling driven in process with real PTB
against the fake Bot API, and `mcpbot run` end to end through an outage, a poison update and a revoked token."""

import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs
from telegram import Bot, Update
from telegram.error import Conflict, NetworkError, RetryAfter

from host.errors import ConfigError, HostError
from host.telegram import polling
from tests.peers.openai_server import Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

BAD_GATEWAY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
REVOKED = "999:REVOKED-TOKEN"


@dataclass
class Seen:
    """What the poller handed over: updates to `accept`, failures to `fail`."""

    updates: list[Update] = field(default_factory=list)
    failures: list[HostError] = field(default_factory=list)
    failed: anyio.Event = field(default_factory=anyio.Event)

    def texts(self) -> list[str | None]:
        return [update.message.text if update.message else None for update in self.updates]


@asynccontextmanager
async def polled(api: FakeBotAPI, *, backoff_cap: float = 0.05) -> AsyncIterator[Seen]:
    """A real PTB Bot pointed at the fake server, polling through host.telegram.polling."""
    seen = Seen()

    def fail(error: HostError) -> None:
        seen.failures.append(error)
        seen.failed.set()

    bot = Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url)
    async with (
        bot,
        polling.polling(bot, seen.updates.append, fail, allowed_updates=["message"], backoff_cap=backoff_cap),
    ):
        yield seen


def statuses(api: FakeBotAPI, method: str = "getUpdates") -> list[int]:
    return [call.status for call in api.calls_of(method)]


def events(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def gaps(api: FakeBotAPI, method: str = "getUpdates") -> list[float]:
    """Seconds between the arrivals of successive calls of a method."""
    return [later.at - earlier.at for earlier, later in itertools.pairwise(api.calls_of(method))]


async def poll_for_hello(api: FakeBotAPI, *, backoff_cap: float = 0.05, within: float = 10) -> list[dict[str, Any]]:
    """Push "hello" behind the faults injected so far and poll until it is handed over, nothing failed; the log."""
    api.push_message(42, "hello")
    with capture_logs() as logs, anyio.fail_after(within):
        async with polled(api, backoff_cap=backoff_cap) as seen:
            await api.wait_for(lambda: len(seen.updates) == 1)
    assert seen.texts() == ["hello"] and seen.failures == []
    return logs


# -- outages, in process ------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_5xx_a_dropped_connection_and_409_are_retried_and_logged_once(
    api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.fail("getUpdates", 502, "Bad Gateway", times=2, raw_body=BAD_GATEWAY_PAGE)
    api.fail("getUpdates", 503, "Service Unavailable")
    api.drop("getUpdates")
    api.fail("getUpdates", 409, CONFLICT)
    logs = await poll_for_hello(api)
    assert statuses(api)[:6] == [502, 502, 503, 0, 409, 200]
    [outage] = events(logs, "telegram_unavailable")
    assert outage["method"] == "getUpdates" and "Bad Gateway" in outage["error"]
    [recovered] = events(logs, "telegram_available_again")
    assert recovered["failed_attempts"] == 5 and recovered["outage_seconds"] > 0
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]  # PTB's own logs too


@pytest.mark.anyio
async def test_the_retries_back_off_doubling_up_to_the_cap(api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "BACKOFF_FIRST", 0.05)
    api.fail("getUpdates", 502, "Bad Gateway", times=7)
    await poll_for_hello(api, backoff_cap=0.1, within=20)
    waits = [0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]
    assert all(gap >= wait for gap, wait in zip(gaps(api), waits, strict=False)), gaps(api)
    assert sum(gaps(api)[:7]) < sum(waits) + 3.0  # doubling without the cap would have waited 6.35 s


def test_an_outage_logs_its_start_and_end_once_and_a_new_one_starts_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter.retry_after as a timedelta, without a deprecation
    outage = polling.Outage("getUpdates", backoff_cap=30.0)
    with capture_logs() as logs:
        waits = [outage.failed(NetworkError("httpx.ConnectError: refused")) for _ in range(8)]
        outage.succeeded()
        after = [outage.failed(Conflict(CONFLICT)), outage.failed(RetryAfter(7))]
    assert waits == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert after == [0.5, 7.0]  # a new outage starts at the first backoff; a 429 waits what it asks
    assert [entry["event"] for entry in logs] == [
        "telegram_unavailable",
        "telegram_available_again",
        "telegram_unavailable",
    ]
    assert logs[1]["failed_attempts"] == 8
    assert "another process is polling with this token" in logs[2]["meaning"]  # what a 409 means


@pytest.mark.anyio
async def test_a_429_waits_the_retry_after_telegram_asks_for(api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    api.flood("getUpdates", retry_after=1)
    logs = await poll_for_hello(api)
    assert statuses(api)[:2] == [429, 200]
    assert gaps(api)[0] >= 1.0  # not the 0.05 s backoff
    [outage] = events(logs, "telegram_unavailable")
    assert outage["retry_in"] == 1.0 and "flood control" in outage["meaning"]


@pytest.mark.anyio
async def test_a_poll_that_times_out_is_retried_and_loses_nothing(
    api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(polling, "POLL_TIMEOUT", 1)
    monkeypatch.setattr(polling, "READ_MARGIN", 0.2)  # a poll unanswered after 1.2 s has timed out
    api.stall("getUpdates", 1.5)
    logs = await poll_for_hello(api)
    [outage] = events(logs, "telegram_unavailable")
    assert "TimedOut" in outage["error"] and "no answer in time" in outage["meaning"]
    assert len(events(logs, "telegram_available_again")) == 1


@pytest.mark.anyio
async def test_delete_webhook_before_polling_is_retried_too(api: FakeBotAPI) -> None:
    api.fail("deleteWebhook", 502, "Bad Gateway", times=2)
    logs = await poll_for_hello(api)
    assert statuses(api, "deleteWebhook") == [502, 502, 200]
    assert [entry["method"] for entry in events(logs, "telegram_unavailable")] == ["deleteWebhook"]


@pytest.mark.anyio
async def test_answers_no_bot_api_would_give_are_an_outage_too(
    api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    api.answer("getUpdates", {"not": "a list"})
    api.fail("getUpdates", 200, "", raw_body='{"ok": true}')  # no result
    api.fail("getUpdates", 200, "", raw_body="[1, 2]")  # JSON, but no object
    api.fail("getUpdates", 200, "", raw_body="<html>maintenance</html>")
    logs = await poll_for_hello(api)
    [outage] = events(logs, "telegram_unavailable")
    assert "not a list" in outage["error"]
    assert events(logs, "telegram_available_again")[0]["failed_attempts"] == 4
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]  # PTB's own logs too


# -- the token ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_token_revoked_while_polling_stops_it_with_the_reason(api: FakeBotAPI) -> None:
    with capture_logs() as logs, anyio.fail_after(10):
        async with polled(api) as seen:
            await api.wait_for(lambda: api.waiting_polls > 0)
            api.token = REVOKED  # the poll after the one in flight gets 401
            api.push_message(42, "hello")
            await seen.failed.wait()
    [failure] = seen.failures
    assert isinstance(failure, ConfigError) and "TELEGRAM_BOT_TOKEN was rejected while polling" in str(failure)
    assert seen.texts() == ["hello"]  # the poll in flight still brought it
    assert not events(logs, "telegram_unavailable")  # not retried
    assert not events(logs, "updates_not_confirmed")  # nor confirmed with a token that is known to be rejected


@pytest.mark.anyio
async def test_a_token_revoked_before_polling_is_a_configuration_error(api: FakeBotAPI) -> None:
    bot = Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url)
    with anyio.fail_after(10):
        async with bot:
            api.token = REVOKED
            with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN was rejected by deleteWebhook"):
                async with polling.polling(bot, lambda _: None, lambda _: None, allowed_updates=["message"]):
                    pass


# -- poison updates, in process -----------------------------------------------------------------------------------

PRIVATE = {"id": 42, "type": "private", "first_name": "U"}
SENDER = {"id": 42, "is_bot": False, "first_name": "U"}


def push_poison(api: FakeBotAPI) -> list[int]:
    """Two updates PTB cannot read: a message without date, and one whose date is text."""
    return [
        api.push_update({"message": {"message_id": 90, "chat": PRIVATE, "from": SENDER, "text": "no date"}}),
        api.push_update({"message": {"message_id": 92, "date": "not a date", "chat": PRIVATE, "text": "bad date"}}),
    ]


@pytest.mark.anyio
async def test_poison_updates_in_a_batch_are_logged_confirmed_and_the_others_handled(api: FakeBotAPI) -> None:
    first = api.push_message(42, "first")
    poison = push_poison(api)
    second = api.push_message(42, "second")  # all four come in one batch
    with capture_logs() as logs, anyio.fail_after(10):
        async with polled(api) as seen:
            await api.wait_for(lambda: len(seen.updates) == 2)
    assert seen.texts() == ["first", "second"] and seen.failures == []
    assert [update.update_id for update in seen.updates] == [first, second]
    unreadable = events(logs, "update_unreadable")
    assert [entry["update_id"] for entry in unreadable] == poison
    assert all(entry["kind"] == "message" and entry["log_level"] == "error" for entry in unreadable)
    assert "missing field 'date'" in unreadable[0]["error"] and "TypeError" in unreadable[1]["error"]
    assert all("bad date" not in entry["error"] for entry in unreadable)  # the reason, not the user's text
    assert api.pending_updates == 0  # confirmed on the way out: Telegram will not send them again
    with capture_logs() as logs, anyio.fail_after(10):
        async with polled(api) as seen:  # a restart
            api.push_message(42, "third")
            await api.wait_for(lambda: len(seen.updates) == 1)
    assert seen.texts() == ["third"] and not events(logs, "update_unreadable")


@pytest.mark.anyio
async def test_an_update_without_update_id_is_logged_and_skipped(api: FakeBotAPI) -> None:
    api.answer("getUpdates", [{"message": {"message_id": 1, "date": 0, "chat": PRIVATE, "text": "x"}}])
    logs = await poll_for_hello(api)
    [unreadable] = events(logs, "update_unreadable")
    assert unreadable["update_id"] is None and "no update_id" in unreadable["error"]


# -- end to end: `mcpbot run` -------------------------------------------------------------------------------------


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        server.always(lambda body: Reply(text=f"answer to {body['messages'][-1]['content']}"))
        yield server


FAST_RETRIES = {"TELEGRAM_POLL_RETRY_MAX_SECONDS": "0.1"}


def log_events(bot: BotProcess, name: str) -> list[dict[str, Any]]:
    return [event for event in bot.log_events() if event.get("event") == name]


def test_the_bot_rides_out_a_polling_outage_and_answers(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    api.fail("getUpdates", 502, "Bad Gateway", times=3, raw_body=BAD_GATEWAY_PAGE)
    api.drop("getUpdates")
    api.fail("getUpdates", 409, CONFLICT)
    api.flood("getUpdates", retry_after=1)
    with BotProcess(api, model, tmp_path, env=FAST_RETRIES) as bot:  # it starts polling through the outage
        api.push_message(42, "hello")
        bot.wait_until(lambda: api.texts(42) == ["answer to hello"])
        assert bot.stop() == 0
    assert statuses(api)[:7] == [502, 502, 502, 0, 409, 429, 200]
    assert gaps(api)[5] >= 1.0  # the 429's retry_after
    [outage] = log_events(bot, "telegram_unavailable")
    assert outage["level"] == "warning" and "Bad Gateway" in outage["error"]
    [recovered] = log_events(bot, "telegram_available_again")
    assert recovered["failed_attempts"] == 6
    assert not log_events(bot, "bot_failing")
    assert sum("Bad Gateway" in line for line in bot.log.splitlines()) == 1  # one line for the whole outage


def test_a_poison_update_is_skipped_and_never_read_again_after_a_restart(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    bot = BotProcess(api, model, tmp_path)
    with bot:
        api.push_message(42, "before")
        poison = api.push_update({"message": {"message_id": 90, "chat": PRIVATE, "from": SENDER, "text": "x"}})
        chatless = api.push_update({"message": {"message_id": 91, "date": 0, "from": SENDER, "text": "x"}})
        api.push_message(42, "after")
        bot.wait_until(lambda: len(api.texts(42)) == 2)
        assert bot.stop() == 0
    with bot.start():
        api.push_message(42, "after the restart")
        bot.wait_until(lambda: len(api.texts(42)) == 3)
        assert bot.stop() == 0
    assert api.texts(42) == ["answer to before", "answer to after", "answer to after the restart"]
    [unreadable] = log_events(bot, "update_unreadable")  # in both runs together: PTB cannot read it
    assert unreadable["update_id"] == poison and "missing field 'date'" in unreadable["error"]
    [not_read] = log_events(bot, "update_not_read")  # PTB reads a message without chat; the bot cannot use it
    assert not_read["update_id"] == chatless


def test_a_token_revoked_while_polling_exits_2_with_one_line(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    with BotProcess(api, model, tmp_path) as bot:
        assert bot.process is not None
        api.token = REVOKED
        api.push_message(42, "hello")  # ends the long poll in flight; the next one gets 401
        assert bot.process.wait(30) == 2
    lines = bot.log.strip().splitlines()
    assert lines[-1] == "configuration error: TELEGRAM_BOT_TOKEN was rejected while polling: was it revoked?"
    assert "Traceback" not in bot.log and not log_events(bot, "telegram_unavailable")
    assert len(log_events(bot, "bot_failing")) == 1
