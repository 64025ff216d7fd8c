"""The fake Bot API server (tests/peers/telegram_server.py) driven by real python-telegram-bot, no mocks."""

import datetime as dtm
import threading
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from telegram import Bot, BotCommand, InputFile, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters
from telegram.request import HTTPXRequest

from host.telegram.send import retry_after_seconds
from tests.peers.telegram_server import MAX_UPLOAD_BYTES, ApiError, FakeBotAPI, parse_html

pytestmark = pytest.mark.anyio


def _bot(api: FakeBotAPI) -> Bot:
    return Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url)


async def _echo(update: Update, _context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None and update.message.text is not None
    await update.message.reply_text(f"echo: {update.message.text}")


@pytest.fixture
async def polling(api: FakeBotAPI) -> AsyncIterator[Application]:  # type: ignore[type-arg]
    """An echo bot polling the fake server, stopped cleanly afterwards."""
    application = ApplicationBuilder().token(api.token).base_url(api.base_url).base_file_url(api.base_file_url).build()
    application.add_handler(MessageHandler(filters.TEXT, _echo))
    async with application:
        await application.start()
        assert application.updater is not None
        await application.updater.start_polling(poll_interval=0, timeout=1)
        yield application
        await application.updater.stop()
        await application.stop()


async def test_echo_bot_answers_in_order(api: FakeBotAPI, polling: Application) -> None:  # type: ignore[type-arg]
    ids = [api.push_message(7, f"message {number}") for number in range(5)]
    assert ids == sorted(ids)
    with anyio.fail_after(10):
        await api.wait_for(lambda: len(api.texts(7)) == 5)
    assert api.texts(7) == [f"echo: message {number}" for number in range(5)]
    sent = api.sent(7)
    assert [record["method"] for record in sent] == ["sendMessage"] * 5
    assert [record["message_id"] for record in sent] == [6, 7, 8, 9, 10]  # the users' and the bot's share ids
    assert polling.bot.username == "fake_bot"
    # A group message arriving later still wakes the waiting long poll at once.
    api.push_message(-100, "/start@fake_bot hi", chat_type="supergroup", message_thread_id=3)
    await api.wait_for(lambda: api.texts(-100) == ["echo: /start@fake_bot hi"])
    assert api.pending_updates <= 1  # the last one is confirmed by the next getUpdates


async def test_repeated_update_id_is_delivered_again(api: FakeBotAPI, polling: Application) -> None:  # type: ignore[type-arg]
    first = api.push_message(8, "once")
    await api.wait_for(lambda: len(api.texts(8)) == 1)
    assert api.push_message(8, "once", update_id=first) == first
    await api.wait_for(lambda: len(api.texts(8)) == 2)
    api.push_message(8, "after")
    await api.wait_for(lambda: len(api.texts(8)) == 3)
    assert api.texts(8) == ["echo: once", "echo: once", "echo: after"]


async def test_sending_editing_and_validation(api: FakeBotAPI) -> None:
    async with _bot(api) as bot:
        message = await bot.send_message(5, '<b>bold</b> &amp; <pre><code class="language-py">x</code></pre>', "HTML")
        assert message.text == "bold & x"
        assert [(entity.type, entity.offset, entity.length) for entity in message.entities] == [
            ("bold", 0, 4),
            ("pre", 7, 1),
        ]
        assert message.entities[1].language == "py"
        with pytest.raises(BadRequest, match=r"(?i)can.t parse entities: Unsupported start tag \"div\""):
            await bot.send_message(5, "<div>x</div>", "HTML")
        with pytest.raises(BadRequest, match=r"(?i)can't parse entities: Unmatched end tag"):
            await bot.send_message(5, "<b><i>x</b></i>", "HTML")
        with pytest.raises(BadRequest, match=r"(?i)can't find end tag"):
            await bot.send_message(5, "<b>x", "HTML")
        with pytest.raises(BadRequest, match=r"(?i)message is too long"):
            await bot.send_message(5, "😀" * 2049)  # 4098 UTF-16 code units
        await bot.send_message(5, "😀" * 2048)
        with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
            await bot.send_message(5, "<b> </b>", "HTML")
        edited = await bot.edit_message_text("<i>new</i>", chat_id=5, message_id=message.message_id, parse_mode="HTML")
        assert isinstance(edited, object) and api.texts(5)[0] == "new"
        assert api.raw_texts(5)[0] == "<i>new</i>"
        with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
            await bot.edit_message_text("<i>new</i>", chat_id=5, message_id=message.message_id, parse_mode="HTML")
        assert await bot.send_message_draft(5, draft_id=1, text="thinking")
        assert await bot.delete_message(5, message.message_id)
        assert api.texts(5) == ["😀" * 2048]
        assert [record["method"] for record in api.sent(5)] == [
            "sendMessage",
            "sendMessage",
            "editMessageText",
            "sendMessageDraft",
        ]
        assert api.sent(5)[3]["params"] == {"chat_id": 5, "draft_id": 1, "text": "thinking"}
        assert await bot.send_chat_action(5, "typing")
        assert api.actions == [(5, "typing")]


async def test_documents_are_kept_with_their_name_and_caption_up_to_50_mb(api: FakeBotAPI) -> None:
    with anyio.fail_after(60):
        async with _bot(api) as bot:
            sent = await bot.send_document(42, InputFile(b'{"a": 1}', filename="a.json"), caption="yours")
            with pytest.raises(NetworkError, match="Request Entity Too Large"):  # Telegram's 413; PTB raises this
                await bot.send_document(42, InputFile(b"x" * (MAX_UPLOAD_BYTES + 1), filename="big.bin"))
            with pytest.raises(BadRequest, match="multipart upload only"):
                await bot.send_document(42, "a-file-id")
            with pytest.raises(BadRequest, match="caption is too long"):
                await bot.send_document(42, InputFile(b"x", filename="c.txt"), caption="c" * 1025)
    assert sent.document is not None and sent.document.file_name == "a.json" and sent.caption == "yours"
    assert api.documents(42) == [{"file_name": "a.json", "data": b'{"a": 1}', "caption": "yours"}]
    assert [call.status for call in api.calls_of("sendDocument")] == [200, 413, 400, 400]


async def test_draft_refused_outside_private_chats(api: FakeBotAPI) -> None:
    api.push_message(-5, "hi", chat_type="group")
    async with _bot(api) as bot:
        with pytest.raises(BadRequest, match=r"(?i)private chats"):
            await bot.send_message_draft(-5, draft_id=1, text="x")
    assert api.sent() == []


async def test_flood_control(api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter.retry_after as a timedelta, without a deprecation
    api.flood("sendMessage", times=2, retry_after=3)
    async with _bot(api) as bot:
        for _ in range(2):
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(1, "x")
            assert caught.value.retry_after == dtm.timedelta(seconds=3)
        await bot.send_message(1, "x")
    assert [call.status for call in api.calls_of("sendMessage")] == [429, 429, 200]
    assert api.texts(1) == ["x"]


async def test_commands_webhook_and_tokens(api: FakeBotAPI) -> None:
    async with _bot(api) as bot:
        assert bot.id == 123456
        await bot.set_my_commands([BotCommand("start", "Start"), BotCommand("reset", "New conversation")])
        assert api.commands == [
            {"command": "start", "description": "Start"},
            {"command": "reset", "description": "New conversation"},
        ]
        assert [command.command for command in await bot.get_my_commands()] == ["start", "reset"]
        await bot.set_webhook("https://example.test/hook", secret_token="s3cret")
        assert api.webhook == {"url": "https://example.test/hook", "secret_token": "s3cret"}
        assert (await bot.get_webhook_info()).url == "https://example.test/hook"
        await bot.delete_webhook()
        assert api.webhook["url"] == ""
        file_id = api.add_file(b"content", "documents/a.txt")
        assert await (await bot.get_file(file_id)).download_as_bytearray() == bytearray(b"content")
    request = HTTPXRequest()  # a bot that never initialised does not close its client on shutdown()
    wrong = Bot("999:WRONG", base_url=api.base_url, request=request)
    try:
        with pytest.raises(InvalidToken):
            await wrong.get_me()
    finally:
        await request.shutdown()
    async with httpx.AsyncClient() as client:
        unknown = await client.post(f"{api.base_url}{api.token}/noSuchMethod", json={})
        form = await client.post(f"{api.base_url}{api.token}/sendMessage", data={"chat_id": "2", "text": "123"})
    assert unknown.status_code == 404 and unknown.json()["description"] == "Not Found: method not found"
    assert form.json()["result"]["text"] == "123" and api.texts(2) == ["123"]


def test_html_parser_details() -> None:
    text, entities = parse_html('<a href="https://x.test/?a=1&amp;b=2">l</a> <span class="tg-spoiler">s</span>')
    assert text == "l s"
    assert entities == [
        {"type": "text_link", "url": "https://x.test/?a=1&b=2", "offset": 0, "length": 1},
        {"type": "spoiler", "offset": 2, "length": 1},
    ]
    assert parse_html("<blockquote expandable>q</blockquote> a & b &#33;")[0] == "q a & b !"
    assert parse_html("<blockquote expandable>q</blockquote>")[1][0]["type"] == "expandable_blockquote"
    for bad in ("<span>x</span>", "a < b", "</b>", "<b x"):
        with pytest.raises(ApiError, match=r"(?i)can't parse entities"):
            parse_html(bad)


def test_blocking_helpers_and_clean_shutdown() -> None:
    before = set(threading.enumerate())
    with FakeBotAPI(token="42:OTHER") as api:
        assert api.base_url.endswith("/bot") and api.bot_id == 42

        def long_poll() -> None:
            with httpx.Client() as client:
                client.post(f"{api.base_url}{api.token}/getUpdates", json={"offset": 0, "timeout": 30})

        poller = threading.Thread(target=long_poll)
        poller.start()
        api.wait_until(lambda: api.waiting_polls == 1)  # woken by the server thread's change
        with pytest.raises(TimeoutError, match="condition not met"):
            api.wait_until(lambda: api.texts(1), timeout=0.05)
    poller.join(timeout=5)  # the pending long poll was released by the shutdown
    assert not poller.is_alive()
    assert set(threading.enumerate()) <= before


async def test_flood_limit_refuses_a_send_past_the_limit_in_any_rolling_second(
    api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # RetryAfter.retry_after as a timedelta, without a deprecation
    api.flood_limit(per_second=3)
    async with _bot(api) as bot:
        for number in range(3):
            await bot.send_message(5, f"burst {number}")
        with pytest.raises(RetryAfter) as refused:
            await bot.send_message(5, "one too many")
        await anyio.sleep(1.0)  # the rolling second passes (what is tested, not a synchronisation)
        await bot.send_message(5, "later")
    assert retry_after_seconds(refused.value) == 1.0
    assert api.flood_violations == 1
    assert api.texts(5) == ["burst 0", "burst 1", "burst 2", "later"]


async def test_a_user_who_blocked_the_bot_gets_403(api: FakeBotAPI) -> None:
    api.block_bot(6)
    async with _bot(api) as bot:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(6, "hello?")
        await bot.send_message(7, "hello")
    assert api.texts(6) == [] and api.texts(7) == ["hello"]
