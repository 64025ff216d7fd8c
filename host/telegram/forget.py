"""/forget: a user asks the bot to delete everything it keeps of them, confirms with a button in their private
chat, and the service deletes it (host.service.Service.forget). A press anywhere else, or by anyone else, changes
nothing; "Keep it" changes nothing either."""

import structlog
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup

from host.service import Service
from host.telegram.incoming import Incoming
from host.telegram.send import Target, send_html

log = structlog.get_logger("host.telegram")

YES, NO = "forget:yes", "forget:no"
ASK = (
    "Delete everything I keep of you: our conversations (with my answers), your messages in groups, this chat's "
    "settings and files? This cannot be undone."
)
ONLY_PRIVATE = "Send /forget in a private chat with me: there I can ask you to confirm."
KEPT = "Nothing was deleted."


async def ask(bot: Bot, message: Incoming, target: Target) -> None:
    """The question with its two buttons, in a private chat only (the button must be the user's own)."""
    if not message.private:
        await send_html(bot, target, ONLY_PRIVATE)
        return
    buttons = [
        [InlineKeyboardButton("Delete everything", callback_data=YES)],
        [InlineKeyboardButton("Keep it", callback_data=NO)],
    ]
    await send_html(bot, target, ASK, markup=InlineKeyboardMarkup(buttons))


def is_forget_button(data: str) -> bool:
    return data in (YES, NO)


async def confirmed(service: Service, message: Incoming) -> str:
    """A press of one of the buttons: what to tell the user. Only the user in their own private chat may delete."""
    own = message.private and message.user_id is not None and message.chat_id == message.user_id
    if not own:
        log.info("button_refused", reason="forget pressed outside the user's own chat")
        return KEPT
    if message.text == NO:
        return KEPT
    assert message.user_id is not None
    forgotten = await service.forget(message.user_id)
    folders = f" and {forgotten.folders} folder{'s' if forgotten.folders != 1 else ''}" if forgotten.folders else ""
    return f"Done: I deleted {forgotten.messages} messages{folders}, and everything else I kept of you."
