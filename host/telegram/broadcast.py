"""The broadcast sender: a chore that, forever, claims the unfinished broadcasts this process may send
(host.service.broadcasts) and sends each pending recipient the text, at BROADCAST_PER_SECOND messages a second for
the whole process, then reports the counts to the admin who started it.

Each recipient's outcome is stored right after its send, so a restart resumes with the pending ones; a crash
between a send and its mark sends that one message again (as may a send that timed out after Telegram took it).
Telegram's answers decide the outcome: 429 waits the retry_after asked for and sends to the same user again (up
to FLOOD_ATTEMPTS times);
Forbidden (they blocked the bot, or their account is gone) skips them and marks them unreachable; network failures
are retried with backoff NETWORK_ATTEMPTS times in all; anything else fails that recipient.
"""

import html

import anyio
import structlog
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from host.backoff import backoff
from host.errors import StorageError
from host.service import Broadcasting, Claimed, Outcome, Progress
from host.telegram.send import Target, retry_after_seconds, send_html

log = structlog.get_logger("host.telegram")

POLL_SECONDS = 5.0  # how often broadcasts of other processes (a lapsed lease) are looked for
BATCH = 100  # recipients read at once
NETWORK_ATTEMPTS = 4
FLOOD_ATTEMPTS = 5  # 429s in a row for one recipient before it counts as failed (each waited out first)
NETWORK_BACKOFF = 0.5  # seconds after the first network failure, doubling up to NETWORK_BACKOFF_CAP
NETWORK_BACKOFF_CAP = 8.0
SLACK = 1.05  # each slot is this much longer than 1/rate: network jitter never packs rate+1 into Telegram's second


def report_text(progress: Progress) -> str:
    return (
        f"Broadcast {progress.id}: sent {progress.sent}, failed {progress.failed}, "
        f"skipped {progress.skipped} (they blocked the bot, or an admin blocked them)"
    )


class Pace:
    """Evenly spaced slots, at most `per_second` a second, without bursts after a pause; for the one sender task,
    so that all the process's broadcasts (and their reports) share the rate."""

    def __init__(self, per_second: int) -> None:
        self.interval = SLACK / per_second
        self._next = 0.0

    async def slot(self) -> None:
        now = anyio.current_time()
        if self._next > now:
            await anyio.sleep(self._next - now)
        self._next = max(now, self._next) + self.interval


class Sender:
    def __init__(self, broadcasting: Broadcasting, bot: Bot, per_second: int, *, alone: bool) -> None:
        self.broadcasting = broadcasting
        self.bot = bot
        self.pace = Pace(per_second)
        self.alone = alone  # the only process (polling): any unfinished broadcast is its to send

    async def run(self) -> None:
        """Forever: send every broadcast there is to send, then wait for one created here, or POLL_SECONDS. A
        database that fails is logged, and the broadcast taken up again at the next round."""
        while True:
            try:
                claimed = await self.broadcasting.claim(alone=self.alone)
                if claimed is not None:
                    await self._send(claimed)
                    continue
            except* StorageError as failed:
                log.warning("broadcast_interrupted", error=str(failed.exceptions[0]))
            await self.broadcasting.created(POLL_SECONDS)

    async def _send(self, claimed: Claimed) -> None:
        """Send the broadcast while holding its lease; stop when another process took it over."""
        async with anyio.create_task_group() as tasks:

            async def hold() -> None:
                await self.broadcasting.hold(claimed.id)
                log.warning("broadcast_taken_over", broadcast=claimed.id)
                tasks.cancel_scope.cancel()

            tasks.start_soon(hold)
            await self._send_all(claimed)
            tasks.cancel_scope.cancel()

    async def _send_all(self, claimed: Claimed) -> None:
        text = html.escape(claimed.text)
        log.info("broadcast_sending", broadcast=claimed.id)
        while recipients := await self.broadcasting.pending(claimed.id, BATCH):
            for user_id in recipients:
                if not await self.broadcasting.mark(claimed.id, user_id, await self._deliver(user_id, text)):
                    log.warning("broadcast_taken_over", broadcast=claimed.id)
                    return
        progress = await self.broadcasting.finish(claimed.id)
        if progress is None:  # another process finished it
            return
        log.info(
            "broadcast_finished",
            broadcast=claimed.id,
            sent=progress.sent,
            failed=progress.failed,
            skipped=progress.skipped,
        )
        if claimed.created_by is not None:
            await self._report(claimed.created_by, progress)

    async def _deliver(self, user_id: int, text: str) -> Outcome:
        network_failures = floods = 0
        while True:
            await self.pace.slot()
            try:
                await send_html(self.bot, Target(user_id), text, patient=False)
                return "sent"
            except RetryAfter as error:
                floods += 1
                if floods == FLOOD_ATTEMPTS:
                    log.warning("broadcast_send_failed", chat_id=user_id, error=f"{floods} flood waits in a row")
                    return "failed"
                seconds = retry_after_seconds(error)
                log.warning("broadcast_flood_wait", seconds=seconds)
                await anyio.sleep(seconds)
            except Forbidden as error:
                log.info("broadcast_recipient_unreachable", chat_id=user_id, error=error.message)
                return "skipped"
            except BadRequest as error:  # before NetworkError: PTB's BadRequest is one
                log.warning("broadcast_send_failed", chat_id=user_id, error=error.message)
                return "failed"
            except NetworkError as error:
                network_failures += 1
                if network_failures == NETWORK_ATTEMPTS:
                    log.warning("broadcast_send_failed", chat_id=user_id, error=str(error))
                    return "failed"
                await anyio.sleep(backoff(network_failures, NETWORK_BACKOFF, NETWORK_BACKOFF_CAP))
            except TelegramError as error:
                log.warning("broadcast_send_failed", chat_id=user_id, error=str(error))
                return "failed"

    async def _report(self, admin: int, progress: Progress) -> None:
        """One message with the counts to the admin who started the broadcast; a failure is only logged."""
        await self.pace.slot()
        try:
            await send_html(self.bot, Target(admin), html.escape(report_text(progress)))
        except TelegramError as error:
            log.warning("broadcast_report_not_sent", broadcast=progress.id, error=str(error))
