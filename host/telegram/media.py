"""What tools gave back that a chat can show: images, audio and files from tool results, sent after the answer as
photos (PNG, JPEG, GIF or WebP up to Telegram's 10 MB), audio (MP3 and M4A) or documents (anything else, up to
50 MB). At most MAX_PER_TURN a turn; a file Telegram refuses is logged and the rest still go. The model only ever
saw a short description of them."""

import mimetypes

import structlog
from telegram import Bot
from telegram.error import Forbidden, TelegramError

from host.service import BinaryPart
from host.telegram.send import MAX_UPLOAD_BYTES, FileKind, Target, send_file

log = structlog.get_logger("host.telegram")

MAX_PER_TURN = 10
PHOTO_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_PHOTO_BYTES = 10 * 1024 * 1024
AUDIO_TYPES = frozenset({"audio/mpeg", "audio/mp3", "audio/mp4", "audio/m4a", "audio/x-m4a"})


async def send_media(bot: Bot, target: Target, media: list[BinaryPart]) -> None:
    for number, part in enumerate(media[:MAX_PER_TURN], start=1):
        if len(part.data) > MAX_UPLOAD_BYTES:
            log.info("media_not_sent", reason="over Telegram's 50 MB", mime_type=part.mime_type, size=part.size)
            continue
        photo = part.mime_type in PHOTO_TYPES and len(part.data) <= MAX_PHOTO_BYTES
        kind: FileKind = "photo" if photo else "audio" if part.mime_type in AUDIO_TYPES else "document"
        try:
            await send_file(bot, target, kind, part.data, _file_name(part, number))
        except Forbidden:
            raise  # the user blocked the bot: nobody to send the rest to
        except TelegramError as error:
            log.warning("media_not_sent", reason=str(error), mime_type=part.mime_type, size=part.size)
    if len(media) > MAX_PER_TURN:
        log.info("media_not_sent", reason=f"more than {MAX_PER_TURN} in one turn", count=len(media) - MAX_PER_TURN)


def _file_name(part: BinaryPart, number: int) -> str:
    """The resource's own file name when it has a plain one, else `image-1.png` and the like."""
    own = (part.uri or "").rstrip("/").rsplit("/", 1)[-1]
    if own and "." in own and own.isascii() and len(own) <= 100 and all(c.isalnum() or c in "._-" for c in own):
        return own
    extension = mimetypes.guess_extension(part.mime_type) or ".bin"
    return f"{part.kind}-{number}{extension}"
