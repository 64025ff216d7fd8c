"""What an update asks of the bot: a command, text for the model, something it cannot read, text over Telegram's
own limits (only a forged update carries that), a button pressed (a callback query), or nothing.

A pure function of the update and the bot's identity, so that the rules for groups (answer only when mentioned
or replied to), forum topics and commands addressed to other bots live in one place.
Imports only PTB types and split's utf16_len.
"""

from dataclasses import dataclass
from typing import Literal

from telegram import Message, MessageEntity, Update

from host.telegram.split import utf16_len

COMMANDS = {
    "start": "what this bot is and how to use it",
    "help": "how to use this bot",
    "reset": "start a new conversation (/reset settings: this chat's settings back to the defaults)",
    "tools": "what the bot can use, by server",
    "servers": "the status of the model and each tool server",
    "settings": "this chat's model, temperature and personal system prompt",
    "model": "choose the model for this chat",
    "temperature": "set how varied answers are, 0 to 2",
    "system": "your own standing instructions for this chat (/system off clears them)",
    "mcp": "turn the tool servers on or off for this chat",
    "usage": "the tokens you used today and your daily budget",
    "forget": "delete everything the bot keeps of you (it asks first)",
    "export": "your conversations as files (JSON and Markdown), in the private chat",
}
ADMIN_COMMANDS = {  # only for ADMIN_USER_IDS, and only in their menu (host/telegram/admin.py)
    "block": "block a user: /block USER_ID",
    "unblock": "unblock a user: /unblock USER_ID",
    "reload": "read mcp_servers.json again: changed servers restart, the others keep running",
    "stats": "today's users, messages, model and tool calls, response time and tokens",
    "broadcast": "send a message to every user: /broadcast TEXT",
}

Kind = Literal["command", "text", "unreadable", "too_long", "callback"]

MAX_TEXT = 4096  # Telegram's limits, in UTF-16 code units: a message's text, a media caption
MAX_CAPTION = 1024


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message the bot should act on."""

    update_id: int
    kind: Kind
    chat_id: int
    topic_id: int  # the forum topic (message_thread_id), or 0: each topic has its own conversation
    message_id: int
    user_id: int | None
    private: bool
    text: str  # for "text": what goes to the model; for "command": the command's name; for "callback": its data
    args: str = ""  # for "command": the text after the command, stripped
    callback_id: str | None = None  # for "callback": the query to answer

    @property
    def thread_id(self) -> int | None:
        """Where replies go inside the chat (the topic), None for the chat itself."""
        return self.topic_id or None


@dataclass(frozen=True, slots=True)
class BotIdentity:
    id: int
    username: str


def incoming(update: Update, bot: BotIdentity, *, answer_all_in_groups: bool = False) -> Incoming | None:
    """The message the bot should act on, or None when it is not for the bot (or not a message at all)."""
    if update.callback_query is not None:
        return _callback(update)
    message = update.message
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None
    private = message.chat.type == "private"
    topic_id = message.message_thread_id if message.is_topic_message and message.message_thread_id else 0

    def make(kind: Kind, text: str, args: str = "") -> Incoming:
        return Incoming(
            update_id=update.update_id,
            kind=kind,
            chat_id=message.chat.id,
            topic_id=topic_id,
            message_id=message.message_id,
            user_id=message.from_user.id if message.from_user else None,
            private=private,
            text=text,
            args=args,
        )

    text = message.text
    if text is None:
        if not (private or _replies_to_bot(message, bot)):
            return None
        too_long = message.caption is not None and utf16_len(message.caption) > MAX_CAPTION
        return make("too_long" if too_long else "unreadable", "")
    if utf16_len(text) > MAX_TEXT:
        addressed = (
            private or answer_all_in_groups or _replies_to_bot(message, bot) or _mentions_bot(message, text, bot)[0]
        )
        return make("too_long", "") if addressed else None
    command = _command(message)
    if command is not None:
        name, target, args = command
        if target and target != bot.username.lower():
            return None  # another bot's command
        addressed = bool(target)
        if name in COMMANDS or name in ADMIN_COMMANDS:
            return make("command", name, args)
        return make("command", "help") if private or addressed else None  # unknown: say what is known
    if private or answer_all_in_groups:
        return make("text", text)
    addressed, stripped = _mentions_bot(message, text, bot)
    if addressed:
        return make("text", stripped.strip())  # "" for a bare mention: the front end asks for a question
    if _replies_to_bot(message, bot):
        return make("text", text)
    return None


def _command(message: Message) -> tuple[str, str, str] | None:
    """(name, the @bot it is addressed to or "", the text after it) for a command at the start of the text; the
    name and the bot in lower case."""
    first = next(iter(message.entities), None)
    if first is None or first.type != MessageEntity.BOT_COMMAND or first.offset != 0:
        return None
    command = message.parse_entity(first)
    name, _, target = command[1:].lower().partition("@")
    return name, target, (message.text or "")[len(command) :].strip()


def _callback(update: Update) -> Incoming | None:
    """A button pressed under one of the bot's messages. Its data is whatever the client sent (anyone can forge
    it): the front end checks it. A query without its message (too old, or from an inline message) still gets an
    Incoming, so that it is answered; it names no chat (chat_id 0), so it cannot change one."""
    query = update.callback_query
    if query is None or query.from_user.is_bot:
        return None
    message = query.message
    chat_id, private, topic_id, message_id = 0, False, 0, 0
    if message is not None:
        chat_id, message_id, private = message.chat.id, message.message_id, message.chat.type == "private"
        if isinstance(message, Message) and message.is_topic_message and message.message_thread_id:
            topic_id = message.message_thread_id
    return Incoming(
        update_id=update.update_id,
        kind="callback",
        chat_id=chat_id,
        topic_id=topic_id,
        message_id=message_id,
        user_id=query.from_user.id,
        private=private,
        text=query.data or "",
        callback_id=query.id,
    )


def _mentions_bot(message: Message, text: str, bot: BotIdentity) -> tuple[bool, str]:
    """Whether the text @mentions the bot, and the text without that mention."""
    for entity, value in message.parse_entities([MessageEntity.MENTION, MessageEntity.TEXT_MENTION]).items():
        by_name = entity.type == MessageEntity.MENTION and value[1:].lower() == bot.username.lower()
        by_id = entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == bot.id
        if by_name or by_id:
            return True, text.replace(value, "", 1) if by_name else text
    return False, text


def _replies_to_bot(message: Message, bot: BotIdentity) -> bool:
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot.id
