"""Which updates the bot acts on: private chats always; groups when mentioned, replied to, or commanded;
commands addressed to other bots never; each forum topic its own conversation."""

from typing import Any

import pytest
from telegram import Update

from host.telegram.incoming import BotIdentity, Incoming, incoming

BOT = BotIdentity(id=777, username="Our_Bot")
USER = {"id": 5, "is_bot": False, "first_name": "Ann"}


def update(text: str | None, *, chat_type: str = "private", **message: Any) -> Update:
    chat = {"id": 5 if chat_type == "private" else -100, "type": chat_type}
    body: dict[str, Any] = {"message_id": 10, "date": 0, "chat": chat, "from": USER, **message}
    if text is not None:
        body["text"] = text
        if text.startswith("/"):
            body["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return Update.de_json({"update_id": 1, "message": body}, None)


def test_private_text_goes_to_the_model_as_it_is() -> None:
    found = incoming(update("  hello there "), BOT)
    assert found == Incoming(1, "text", 5, 0, 10, 5, True, "  hello there ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/reset", "reset"),
        ("/RESET", "reset"),
        ("/tools@our_bot", "tools"),
        ("/start now", "start"),
        ("/whatever", "help"),  # unknown: the bot says what it knows
    ],
)
def test_private_commands(text: str, expected: str) -> None:
    found = incoming(update(text), BOT)
    assert found is not None and (found.kind, found.text) == ("command", expected)


def test_a_command_for_another_bot_is_ignored() -> None:
    assert incoming(update("/reset@other_bot"), BOT) is None
    assert incoming(update("/reset@other_bot", chat_type="group"), BOT) is None


def test_group_messages_need_a_mention_or_a_reply() -> None:
    assert incoming(update("just talking", chat_type="group"), BOT) is None
    mention = [{"type": "mention", "offset": 4, "length": 8}]
    found = incoming(update("hey @our_bot what now?", chat_type="group", entities=mention), BOT)
    assert found is not None and found.text == "hey  what now?".strip() and not found.private
    bare = incoming(
        update("@our_bot", chat_type="group", entities=[{"type": "mention", "offset": 0, "length": 8}]), BOT
    )
    assert bare is not None and bare.text == ""  # the front end asks for a question
    other = [{"type": "mention", "offset": 0, "length": 6}]
    assert incoming(update("@alice look", chat_type="group", entities=other), BOT) is None
    reply = {
        "message_id": 3,
        "date": 0,
        "chat": {"id": -100, "type": "group"},
        "from": {"id": 777, "is_bot": True, "first_name": "B"},
    }
    found = incoming(update("and then?", chat_type="group", reply_to_message=reply), BOT)
    assert found is not None and found.text == "and then?"


def test_group_commands_and_the_answer_everything_setting() -> None:
    found = incoming(update("/servers", chat_type="supergroup"), BOT)
    assert found is not None and found.text == "servers"
    assert incoming(update("/whatever", chat_type="supergroup"), BOT) is None  # maybe another bot's command
    found = incoming(update("anything", chat_type="group"), BOT, answer_all_in_groups=True)
    assert found is not None and found.text == "anything"


def test_a_forum_topic_is_its_own_conversation_and_a_reply_thread_is_not() -> None:
    mention = [{"type": "mention", "offset": 0, "length": 8}]
    topic = incoming(
        update("@our_bot hi", chat_type="supergroup", entities=mention, message_thread_id=9, is_topic_message=True),
        BOT,
    )
    assert topic is not None and (topic.topic_id, topic.thread_id) == (9, 9)
    thread = incoming(update("@our_bot hi", chat_type="supergroup", entities=mention, message_thread_id=4), BOT)
    assert thread is not None and (thread.topic_id, thread.thread_id) == (0, None)


def test_what_the_bot_cannot_read() -> None:
    photo = [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}]
    found = incoming(update(None, photo=photo), BOT)
    assert found is not None and found.kind == "unreadable"
    assert incoming(update(None, chat_type="group", photo=photo), BOT) is None
    assert incoming(Update.de_json({"update_id": 2}, None), BOT) is None
    from_bot = update("hi", **{"from": {"id": 9, "is_bot": True, "first_name": "Other"}})
    assert incoming(from_bot, BOT) is None


def test_text_over_telegrams_limits_is_refused_not_read() -> None:
    """Telegram never sends such updates: a forged webhook body does. Counted in UTF-16 code units."""
    assert incoming(update("a" * 4096), BOT).kind == "text"  # type: ignore[union-attr]
    assert incoming(update("😀" * 2049), BOT) == Incoming(1, "too_long", 5, 0, 10, 5, True, "")
    photo = [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}]
    assert incoming(update(None, photo=photo, caption="c" * 1024), BOT).kind == "unreadable"  # type: ignore[union-attr]
    assert incoming(update(None, photo=photo, caption="c" * 1025), BOT).kind == "too_long"  # type: ignore[union-attr]
    assert incoming(update("a" * 5000, chat_type="group"), BOT) is None  # not for the bot anyway
    mention = [{"type": "mention", "offset": 0, "length": 8}]
    found = incoming(update("@our_bot " + "a" * 5000, chat_type="group", entities=mention), BOT)
    assert found is not None and found.kind == "too_long"


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("/model big-model", "model", "big-model"),
        ("/model@our_bot  big-model ", "model", "big-model"),
        ("/temperature 0.5", "temperature", "0.5"),
        ("/system Be brief.\nAnd kind.", "system", "Be brief.\nAnd kind."),
        ("/reset settings", "reset", "settings"),
        ("/settings", "settings", ""),
    ],
)
def test_a_command_carries_the_text_after_it(text: str, name: str, args: str) -> None:
    found = incoming(update(text), BOT)
    assert found is not None and (found.kind, found.text, found.args) == ("command", name, args)


def callback(data: str | None, *, user: dict[str, Any] = USER, message: dict[str, Any] | None = None) -> Update:
    query: dict[str, Any] = {"id": "q1", "from": user, "chat_instance": "i"}
    if data is not None:
        query["data"] = data
    if message is not None:
        query["message"] = message
    return Update.de_json({"update_id": 3, "callback_query": query}, None)


def test_a_button_press_names_its_chat_topic_and_data() -> None:
    chat = {"id": -100, "type": "supergroup", "is_forum": True}
    message = {"message_id": 12, "date": 0, "chat": chat, "message_thread_id": 9, "is_topic_message": True}
    found = incoming(callback("model:big", message=message), BOT)
    assert found == Incoming(3, "callback", -100, 9, 12, 5, False, "model:big", callback_id="q1")


def test_a_button_press_without_its_message_or_data_names_no_chat() -> None:
    found = incoming(callback(None), BOT)
    assert found is not None and (found.kind, found.chat_id, found.text, found.callback_id) == ("callback", 0, "", "q1")


def test_a_button_press_by_a_bot_is_ignored() -> None:
    assert incoming(callback("model:big", user={"id": 9, "is_bot": True, "first_name": "B"}), BOT) is None
