"""Sending to Telegram so that a message is not lost on the way: flood control's retry_after is waited out,
network failures are retried, and HTML that Telegram refuses is sent again as plain text.

Imports PTB and the renderer only.
"""

import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, TypeVar

import anyio
import structlog
from telegram import Bot, InlineKeyboardMarkup, InputFile, Message, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, NetworkError, RetryAfter, TimedOut
from telegram.warnings import PTBDeprecationWarning

from host.telegram.split import plain_text

log = structlog.get_logger("host.telegram")

ATTEMPTS = 5
MAX_FLOOD_WAIT = 300.0  # seconds; a longer retry_after fails the send instead of holding the chat this long
NETWORK_BACKOFF = 1.0

UPLOAD_SECONDS = 120.0  # to write and read back a file of up to MAX_UPLOAD_BYTES on a slow link
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what a bot may upload (20 MB less for a photo, see telegram/media.py)
FileKind = Literal["document", "photo", "audio"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a reply goes: the chat, its forum topic, and in groups the message it answers."""

    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None


def retry_after_seconds(error: RetryAfter) -> float:
    """The wait Telegram asked for, in seconds (PTB gives an int or a timedelta depending on PTB_TIMEDELTA)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def is_parse_error(error: BadRequest) -> bool:
    return "can't parse entities" in error.message.lower()


async def _attempt(action: Callable[[], Awaitable[T]], what: str, patient: bool) -> T:
    """Run one Bot API call. Patient: wait out 429s (up to MAX_FLOOD_WAIT) and retry network failures, ATTEMPTS
    in all; else one try. A BadRequest is Telegram saying no and is raised at once."""
    if not patient:
        return await action()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await action()
        except RetryAfter as error:
            wait = retry_after_seconds(error)
            if attempt == ATTEMPTS or wait > MAX_FLOOD_WAIT:
                raise
            log.warning("telegram_flood_wait", method=what, seconds=wait)
            await anyio.sleep(wait)
        except BadRequest:
            raise
        except (TimedOut, NetworkError) as error:
            if attempt == ATTEMPTS:
                raise
            log.warning("telegram_send_retry", method=what, error=str(error), attempt=attempt)
            await anyio.sleep(NETWORK_BACKOFF * attempt)
    raise AssertionError("unreachable")


async def send_html(
    bot: Bot,
    target: Target,
    html: str,
    *,
    reply: bool = True,
    patient: bool = True,
    markup: InlineKeyboardMarkup | None = None,
) -> Message:
    """sendMessage with Telegram HTML; the same text as plain text when Telegram cannot parse the HTML.
    `patient=False` makes one attempt (previews: a 429 there must not hold anything up); `markup`: buttons."""
    reply_parameters = (
        ReplyParameters(target.reply_to, allow_sending_without_reply=True) if reply and target.reply_to else None
    )

    async def send(text: str, parse_mode: str | None) -> Message:
        return await bot.send_message(
            target.chat_id,
            text,
            parse_mode=parse_mode,
            message_thread_id=target.thread_id,
            reply_parameters=reply_parameters,
            reply_markup=markup,
        )

    try:
        return await _attempt(lambda: send(html, ParseMode.HTML), "sendMessage", patient)
    except BadRequest as error:
        if not is_parse_error(error):
            raise
        log.warning("telegram_html_refused", chat_id=target.chat_id, error=error.message)
        return await _attempt(lambda: send(plain_text(html), None), "sendMessage", patient)


async def edit_html(bot: Bot, target: Target, message_id: int, html: str, *, patient: bool = True) -> bool:
    """editMessageText with Telegram HTML (plain text when refused); False when the message cannot be edited
    any more (deleted, too old), so that the caller sends a new one."""

    async def edit(text: str, parse_mode: str | None) -> None:
        await bot.edit_message_text(text, chat_id=target.chat_id, message_id=message_id, parse_mode=parse_mode)

    try:
        try:
            await _attempt(lambda: edit(html, ParseMode.HTML), "editMessageText", patient)
        except BadRequest as error:
            if not is_parse_error(error):
                raise
            log.warning("telegram_html_refused", chat_id=target.chat_id, error=error.message)
            await _attempt(lambda: edit(plain_text(html), None), "editMessageText", patient)
    except BadRequest as error:
        if "not modified" in error.message.lower():
            return True
        log.info("telegram_edit_failed", chat_id=target.chat_id, error=error.message)
        return False
    return True


async def send_file(
    bot: Bot, target: Target, kind: FileKind, data: bytes, filename: str, caption: str | None = None
) -> None:
    """sendDocument, sendPhoto or sendAudio of bytes as an upload, with UPLOAD_SECONDS to write and read; one try
    (a failure raises the TelegramError)."""
    upload, chat, thread, wait = InputFile(data, filename=filename), target.chat_id, target.thread_id, UPLOAD_SECONDS
    if kind == "photo":
        await bot.send_photo(
            chat, upload, caption=caption, message_thread_id=thread, write_timeout=wait, read_timeout=wait
        )
    elif kind == "audio":
        await bot.send_audio(
            chat, upload, caption=caption, message_thread_id=thread, write_timeout=wait, read_timeout=wait
        )
    else:
        await bot.send_document(
            chat, upload, caption=caption, message_thread_id=thread, write_timeout=wait, read_timeout=wait
        )
