"""The sending layer against the fake Bot API with a real PTB Bot: what happens when Telegram says no."""

import pytest
from telegram import Bot
from telegram.error import BadRequest

from host.telegram.send import Target, edit_html, send_html
from tests.peers.telegram_server import FakeBotAPI

pytestmark = pytest.mark.anyio


async def test_an_edit_of_a_deleted_message_says_so_and_an_unchanged_edit_is_fine(api: FakeBotAPI, bot: Bot) -> None:
    target = Target(42)
    sent = await send_html(bot, target, "<b>draft</b>")
    assert await edit_html(bot, target, sent.message_id, "<b>draft</b>")  # "message is not modified"
    assert await edit_html(bot, target, sent.message_id, "final")
    await bot.delete_message(42, sent.message_id)
    assert not await edit_html(bot, target, sent.message_id, "too late")
    assert api.texts(42) == []


async def test_a_refused_edit_falls_back_to_plain_text(api: FakeBotAPI, bot: Bot) -> None:
    target = Target(42)
    sent = await send_html(bot, target, "first")
    api.fail("editMessageText", 400, "Bad Request: can't parse entities: Unclosed start tag at byte offset 0")
    assert await edit_html(bot, target, sent.message_id, "<b>bold</b> &amp; more")
    assert api.texts(42) == ["bold & more"]


async def test_a_gateway_error_is_retried_and_other_refusals_are_not(api: FakeBotAPI, bot: Bot) -> None:
    api.fail("sendMessage", 502, "Bad Gateway")
    await send_html(bot, Target(42), "arrives after one retry")
    assert api.texts(42) == ["arrives after one retry"]
    api.fail("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await send_html(bot, Target(43), "never")


async def test_replies_in_groups_and_topics(api: FakeBotAPI, bot: Bot) -> None:
    await send_html(bot, Target(-100, thread_id=9, reply_to=5), "in the topic")
    params = api.sent(-100)[0]["params"]
    assert params["message_thread_id"] == 9
    assert params["reply_parameters"] == {"message_id": 5, "allow_sending_without_reply": True}
