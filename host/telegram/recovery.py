"""Crash recovery: the replies still owed when the bot died (host.storage.pending) are delivered after it restarts.

At start, before the first update is read, the messages left unanswered are claimed and queued in their chats,
ahead of anything new. An answer stored before the crash is delivered as it is; else a message of the last
RECOVER_WINDOW_SECONDS has its turn run again, and an older one, or one whose recovery was already begun
MAX_ATTEMPTS times (it may be what crashed the bot), gets a short note. A preview message the crash left is
edited to say it was cut off.
While running, a webhook replica renews the leases of the replies it owes and claims those of replicas that died.
"""

import html
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio
import structlog
from telegram.error import TelegramError

from host.service import Orphan
from host.telegram.frontend import FrontEnd
from host.telegram.incoming import Incoming
from host.telegram.reply import Reply
from host.telegram.send import Target, edit_html, send_html

log = structlog.get_logger("host.telegram")

RENEW_EVERY = 60.0  # a third of a reply's lease (host.storage.pending.LEASE)
MAX_ATTEMPTS = 2
CUT_OFF = "✂️ This answer was cut off when I was restarted."
TOO_LATE = "⚠️ I was restarted and could not answer your message from {time}. Please send it again."


class Recovery:
    """Owns the queue's items of both kinds: an Incoming goes to the front end, an Orphan is recovered here.

    `alone`: no other process reads this bot's updates (long polling), so at start every reply owed is this
    process's to deliver, whatever its lease says; with a webhook, replicas take over only lapsed leases."""

    def __init__(self, front: FrontEnd, *, alone: bool) -> None:
        self.front = front
        self.service = front.service
        self.window = timedelta(seconds=front.app.settings.recover_window_seconds)
        self.alone = alone

    async def start(self, submit: Callable[[Orphan], None]) -> None:
        """Claim the replies owed from before and queue them; a database that does not answer is logged."""
        await self._claim(submit, lapsed_only=not self.alone)

    async def keep(self, submit: Callable[[Orphan], None]) -> None:
        """Forever, as a webhook replica: renew this process's leases, and take over those of replicas that died.
        A polling bot has nothing to do here: nobody else reads its leases (its next start takes every reply owed,
        leases or not), and after its start nobody else owes replies."""
        if self.alone:
            return
        while True:
            await anyio.sleep(RENEW_EVERY)
            if await self.service.renew_leases():
                await self._claim(submit, lapsed_only=True)

    async def _claim(self, submit: Callable[[Orphan], None], *, lapsed_only: bool) -> None:
        for orphan in await self.service.claim_orphans(lapsed_only=lapsed_only):
            submit(orphan)

    async def handle(self, item: Incoming | Orphan) -> None:
        if isinstance(item, Incoming):
            await self.front.handle(item)
            return
        with structlog.contextvars.bound_contextvars(
            chat_id=item.chat_id, user_id=item.user_id, update_id=item.update_id, recovered=item.attempts
        ):
            try:
                await self._recover(item)
            except TelegramError as error:
                log.warning("reply_not_delivered", error=str(error))
                await self.service.delivered(item.update_id)

    async def abandon(self, item: Incoming | Orphan) -> None:
        """The bot stops first: an Incoming is told so; an Orphan stays owed, for the next start."""
        if isinstance(item, Incoming):
            await self.front.abandon(item)

    async def _recover(self, orphan: Orphan) -> None:
        bot = self.front.bot
        private = bool(orphan.route.get("private"))
        reply_to = orphan.route.get("message_id")
        target = Target(orphan.chat_id, orphan.topic_id or None, None if private or reply_to is None else int(reply_to))
        if orphan.preview is not None:
            try:
                if not await edit_html(bot, Target(orphan.chat_id), orphan.preview, CUT_OFF):
                    log.info("preview_not_marked", reason="the message cannot be edited")
            except TelegramError as error:
                log.info("preview_not_marked", error=str(error))
        age = datetime.now(UTC) - orphan.created_at
        if orphan.answer is not None:  # the crash came between storing the answer and delivering it
            log.info("answer_recovered")
            try:
                await Reply(bot, target, draft_id=None).finish(orphan.answer)
            finally:
                await self.service.delivered(orphan.update_id)
        elif age > self.window or orphan.attempts > MAX_ATTEMPTS:
            log.warning("message_not_recovered", age_seconds=round(age.total_seconds()), attempts=orphan.attempts)
            try:
                await send_html(bot, target, html.escape(TOO_LATE.format(time=_when(orphan.created_at)), quote=False))
            finally:
                await self.service.delivered(orphan.update_id)
        else:
            log.info("turn_recovered")
            await self.front.deliver_turn(self.service.resume(orphan), target, orphan.update_id, private=private)


def _when(moment: datetime) -> str:
    """HH:MM UTC for today, with the date before it for an older moment."""
    moment = moment.astimezone(UTC)
    if moment.date() == datetime.now(UTC).date():
        return moment.strftime("%H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M UTC")
