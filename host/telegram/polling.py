"""Long polling that outlives Telegram's hiccups: getUpdates in a loop on its own connection, each update read on
its own so that one the bot cannot read is logged and confirmed instead of stopping the bot, transient failures
retried with capped backoff and logged once per outage, and only a rejected token ends it.

Imports PTB, host.errors, host.telegram.botapi and host.telegram.send only.
"""

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import anyio
import structlog
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError, TimedOut

from host.backoff import backoff
from host.errors import ConfigError, HostError
from host.telegram.botapi import MeteredRequest
from host.telegram.send import retry_after_seconds

log = structlog.get_logger("host.telegram")

POLL_TIMEOUT = 30  # seconds a long poll waits for updates
READ_MARGIN = 10.0  # seconds a long poll's answer may take beyond POLL_TIMEOUT before it counts as timed out
POLL_PAUSE = 0.05  # after a busy poll, so that one poll brings several updates (at most 20 polls a second)
BACKOFF_FIRST = 0.5  # seconds before the first retry; doubled on each failure up to the cap
BACKOFF_CAP = 30.0
CLOSE_SECONDS = 10.0  # for confirming the last updates on the way out
REASON_CHARS = 300  # of a failure's text in a log line


@asynccontextmanager
async def polling(
    bot: Bot,
    accept: Callable[[Update], None],
    fail: Callable[[HostError], None],
    *,
    allowed_updates: list[str],
    backoff_cap: float = BACKOFF_CAP,
) -> AsyncIterator[None]:
    """Delete any webhook (polling and a webhook exclude each other), then poll in a task until the block ends;
    on the way out the updates handed over are confirmed to Telegram. `fail` is told when polling cannot go on."""
    async with Poller(bot, accept, fail, allowed_updates=allowed_updates, backoff_cap=backoff_cap) as poller:
        await poller.patiently("deleteWebhook", lambda: bot.delete_webhook())
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(poller.run)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        with anyio.move_on_after(CLOSE_SECONDS, shield=True):
            await poller.confirm()


class Outage:
    """A run of failed calls to one Bot API method: logged when it starts and when it ends, never per retry. Each
    failure says how long to wait: what a 429 asks for, else a backoff doubling from BACKOFF_FIRST to the cap."""

    def __init__(self, method: str, backoff_cap: float) -> None:
        self.method = method
        self.backoff_cap = backoff_cap
        self.started: float | None = None
        self.failures = 0

    def failed(self, error: TelegramError) -> float:
        """Count a failure (logging the first of an outage); the seconds to wait before the next try."""
        self.failures += 1
        wait = (
            retry_after_seconds(error)
            if isinstance(error, RetryAfter)
            else backoff(self.failures, BACKOFF_FIRST, self.backoff_cap)
        )
        if self.started is None:
            self.started = time.monotonic()
            log.warning(
                "telegram_unavailable",
                method=self.method,
                error=_reason(error),
                meaning=_meaning(error),
                retry_in=wait,
                longest_wait=self.backoff_cap,
            )
        return wait

    def succeeded(self) -> None:
        """The call worked: an outage in progress is over (logged with how long it lasted)."""
        if self.started is not None:
            log.info(
                "telegram_available_again",
                method=self.method,
                outage_seconds=round(time.monotonic() - self.started, 2),
                failed_attempts=self.failures,
            )
        self.started = None
        self.failures = 0


class Poller:
    """getUpdates in a loop on a connection of its own. Each update goes to `accept` (which queues it) before the
    next poll confirms it, so an update is never confirmed unread; an update PTB cannot read is logged and
    confirmed. A rejected token is told to `fail` and ends the loop; every other failure is an Outage."""

    def __init__(
        self,
        bot: Bot,
        accept: Callable[[Update], None],
        fail: Callable[[HostError], None],
        *,
        allowed_updates: list[str],
        backoff_cap: float = BACKOFF_CAP,
    ) -> None:
        self.bot = bot
        self.accept = accept
        self.fail = fail
        self.allowed_updates = allowed_updates
        self.backoff_cap = backoff_cap
        self.offset = 0
        self.token_rejected = False
        # The raw JSON of each batch is read here, not through Bot.get_updates, which parses a batch as a whole:
        # one unreadable update would fail the call and come again forever.
        self.request = _PollRequest(connection_pool_size=1)

    async def __aenter__(self) -> "Poller":
        await self.request.initialize()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        with anyio.move_on_after(CLOSE_SECONDS, shield=True):
            await self.request.shutdown()

    async def patiently(self, method: str, call: Callable[[], Any]) -> None:
        """Make one Bot API call, retried like a poll until it works; a rejected token raises ConfigError."""
        outage = Outage(method, self.backoff_cap)
        while True:
            try:
                await call()
            except InvalidToken:
                raise ConfigError(f"TELEGRAM_BOT_TOKEN was rejected by {method}: was it revoked?") from None
            except TelegramError as error:
                await anyio.sleep(outage.failed(error))
                continue
            outage.succeeded()
            return

    async def run(self) -> None:
        outage = Outage("getUpdates", self.backoff_cap)
        while True:
            try:
                batch = await self._get_updates(POLL_TIMEOUT)
            except InvalidToken:
                self.token_rejected = True
                self.fail(ConfigError("TELEGRAM_BOT_TOKEN was rejected while polling: was it revoked?"))
                return
            except TelegramError as error:
                await anyio.sleep(outage.failed(error))
                continue
            outage.succeeded()
            for raw in batch:
                self._take(raw)
            if batch:
                await anyio.sleep(POLL_PAUSE)

    async def confirm(self) -> None:
        """Confirm the updates handed over since the last poll (getUpdates with the next offset, no wait)."""
        if self.offset and not self.token_rejected:
            try:
                await self._get_updates(0)
            except TelegramError as error:  # they will come again after a restart, and be recognised then
                log.info("updates_not_confirmed", error=_reason(error))

    async def _get_updates(self, wait: int) -> list[Any]:
        """One getUpdates from self.offset that Telegram holds up to `wait` seconds: the raw updates (PTB's errors
        for the failures)."""
        query = {"offset": self.offset, "timeout": wait, "allowed_updates": json.dumps(self.allowed_updates)}
        try:
            result = await self.request.post(
                f"{self.bot.base_url}/getUpdates?{urlencode(query)}", read_timeout=wait + READ_MARGIN
            )
        except TelegramError:
            raise
        except Exception as error:  # PTB reads a 200's JSON as it is: {"ok": true} without result is a KeyError
            raise TelegramError(f"getUpdates answered what no Bot API would: {_reason(error)}") from error
        if not isinstance(result, list):
            raise TelegramError(f"getUpdates answered {type(result).__name__}, not a list of updates")
        return result

    def _take(self, raw: Any) -> None:
        """Hand one raw update to `accept`, or log why it cannot be read; either way it will be confirmed."""
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            log.error("update_unreadable", update_id=None, error="it has no update_id", kind=_kind(raw))
            return
        self.offset = max(self.offset, update_id + 1)
        try:
            update = Update.de_json(raw, self.bot)
        except Exception as error:  # anything PTB cannot parse is this one update's fault
            log.error("update_unreadable", update_id=update_id, error=_reason(error), kind=_kind(raw))
            return
        self.accept(update)


class _PollRequest(MeteredRequest):
    """PTB's HTTPX request, except that a body that is not JSON (a proxy's 502 page) is only the TelegramError it
    becomes: PTB's own parser also logs each one with a traceback, a line per retry during an outage."""

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict[str, Any]:
        try:
            data = json.loads(payload.decode("utf-8", "replace"))
        except ValueError:
            raise TelegramError("Invalid server response") from None
        if not isinstance(data, dict):
            raise TelegramError(f"Invalid server response: a JSON {type(data).__name__}, not an object")
        return data


def _kind(raw: Any) -> str:
    """The update's type ("message", "edited_message"...), never its content."""
    if not isinstance(raw, dict):
        return type(raw).__name__
    return ",".join(sorted(str(key) for key in raw if key != "update_id"))[:REASON_CHARS] or "empty"


def _reason(error: BaseException) -> str:
    if isinstance(error, KeyError):  # PTB reads a required field with data["field"]
        return f"missing field {error}"[:REASON_CHARS]
    text, kind = str(error), type(error).__name__
    return (text if text.startswith(kind) else f"{kind}: {text}")[:REASON_CHARS]


def _meaning(error: TelegramError) -> str:
    """What an operator should make of the failure."""
    if isinstance(error, RetryAfter):
        return "Telegram's flood control: waiting as asked"
    if isinstance(error, Conflict):
        return "another process is polling with this token, or a webhook was set"
    if isinstance(error, TimedOut):
        return "no answer in time: the network or the Bot API is slow"
    return "the Bot API or the network failed"
