"""/export: in a private chat the user gets two documents, their conversations as JSON and as Markdown
(host.service.Service.export builds them). In a group it only says to ask in the private chat, so that no history
is ever posted where others read it. Imports the service, PTB and send only."""

from datetime import UTC, datetime

import structlog
from telegram import Bot
from telegram.error import Forbidden, TelegramError

from host.service import Service
from host.telegram.incoming import Incoming
from host.telegram.send import Target, send_file, send_html

log = structlog.get_logger("host.telegram")

ONLY_PRIVATE = "Send /export in a private chat with me: I send your history only there."
NOTHING = "There is nothing to export: I keep no messages of yours."
NOT_SENT = "⚠️ I could not send your export: Telegram did not take the file. Please try /export again later."
CAPTION = {"json": "Your conversations as JSON (schema in the file).", "md": "Your conversations, to read."}


async def send_export(service: Service, bot: Bot, message: Incoming, target: Target) -> None:
    """The two documents to the user's own private chat, or a short message saying why not."""
    if not message.private or message.user_id is None or message.chat_id != message.user_id:
        await send_html(bot, target, ONLY_PRIVATE)
        return
    files = await service.export(message.user_id)
    if files.messages == 0:
        await send_html(bot, target, NOTHING)
        return
    stem = f"mcpbot-export-{message.user_id}-{datetime.now(UTC).date().isoformat()}"
    try:
        for suffix, data in (("json", files.json), ("md", files.markdown)):
            await send_file(bot, target, "document", data, f"{stem}.{suffix}", CAPTION[suffix])
    except Forbidden:
        raise  # the user blocked the bot: nobody to tell
    except TelegramError as error:
        log.warning("export_not_delivered", error=str(error))
        await send_html(bot, target, NOT_SENT)
