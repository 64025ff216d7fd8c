"""`mcpbot run`: the bot's life cycle. Sign in to the Bot API, open the app (store, MCP servers, model), read
updates by long polling or a webhook, hand each to its chat's queue, and on SIGINT/SIGTERM stop reading, give
running turns SHUTDOWN_GRACE_SECONDS to finish, and close everything (MCP servers included) in reverse.
"""

import signal
from contextlib import nullcontext
from dataclasses import dataclass, field

import anyio
import structlog
from telegram import Bot, Update
from telegram.error import InvalidToken, NetworkError, TelegramError

from host import log as logs
from host.app import App, open_app
from host.errors import ConfigError, HostError
from host.redact import public_url
from host.service import ChatQueues, Orphan
from host.settings import Settings
from host.telegram.admin import register_commands
from host.telegram.botapi import MeteredRequest
from host.telegram.broadcast import Sender
from host.telegram.frontend import FrontEnd
from host.telegram.incoming import BotIdentity, Incoming, incoming
from host.telegram.polling import polling
from host.telegram.probes import serving_probes
from host.telegram.recovery import Recovery
from host.telegram.webhook import serving_webhook

log = structlog.get_logger("host.telegram")

ALLOWED_UPDATES = ["message", "callback_query"]
CONNECTIONS = 256  # to the Bot API, shared by all chats' replies
CLOSE_SECONDS = 10.0  # for each step of closing that talks to Telegram


async def run_bot(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; 0 after a clean stop."""
    if settings.telegram_bot_token is None or not settings.telegram_bot_token.get_secret_value().strip():
        raise ConfigError("TELEGRAM_BOT_TOKEN is not set: get a token from @BotFather and put it in .env")
    token = settings.telegram_bot_token.get_secret_value().strip()
    logs.hide(token)
    if settings.telegram_webhook_url and settings.telegram_webhook_secret is None:
        raise ConfigError(
            "TELEGRAM_WEBHOOK_SECRET must be set with TELEGRAM_WEBHOOK_URL, so that the webhook refuses strangers"
        )
    if settings.admin_api_token is not None and not settings.telegram_webhook_url and settings.metrics_port is None:
        raise ConfigError(
            "ADMIN_API_TOKEN is set, but nothing would serve the admin API: in polling mode it is on METRICS_PORT"
        )
    failed: list[HostError] = []  # raised after the task group, so that it is not wrapped in an ExceptionGroup
    async with anyio.create_task_group() as tasks:
        stop = _Stop(tasks.cancel_scope)
        tasks.start_soon(_watch_signals, stop)
        try:
            await _run(settings, token, stop)
        except HostError as error:
            failed.append(error)
        except BaseExceptionGroup as group:  # raised inside a task group: a lone HostError is reported as one
            lone = _only_host_error(group)
            if lone is None:
                raise
            failed.append(lone)
        tasks.cancel_scope.cancel()
    if failed:
        raise failed[0]
    return 0


def _only_host_error(group: BaseExceptionGroup) -> HostError | None:
    """The HostError when it is all the group holds (nested groups included), else None."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        item = pending.pop()
        if isinstance(item, BaseExceptionGroup):
            pending.extend(item.exceptions)
        else:
            leaves.append(item)
    return leaves[0] if len(leaves) == 1 and isinstance(leaves[0], HostError) else None


@dataclass(slots=True)
class _Stop:
    """How a signal stops the bot: during start-up at once; while serving, the first one gracefully
    (`requested`) and a second one at once; while closing, not at all (closing is bounded anyway)."""

    scope: anyio.CancelScope
    requested: anyio.Event = field(default_factory=anyio.Event)
    serving: bool = False
    closing: bool = False
    failure: HostError | None = None  # why the bot stops on its own, reported once it has stopped

    def fail(self, failure: HostError) -> None:
        log.error("bot_failing", error=str(failure))
        self.failure = failure
        self.requested.set()


async def _watch_signals(stop: _Stop) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if stop.closing:
                log.info("signal_ignored", signal=name, reason="already closing")
            elif stop.serving and not stop.requested.is_set():
                log.info("signal_received", signal=name)
                stop.requested.set()
            else:
                log.warning("stopping_now", signal=name)
                stop.scope.cancel()
                return


async def _run(settings: Settings, token: str, stop: _Stop) -> None:
    bot = _bot(settings, token)
    try:
        identity = await _sign_in(bot, settings)
        async with open_app(settings) as app:
            await register_commands(bot, frozenset(settings.admin_user_ids))
            front = FrontEnd(app, bot)
            await _serve(app, bot, identity, front, stop)
            stop.closing = True
        if stop.failure is not None:
            raise stop.failure
    finally:
        with anyio.move_on_after(CLOSE_SECONDS, shield=True):
            await bot.shutdown()


def _bot(settings: Settings, token: str) -> Bot:
    base_url = settings.telegram_api_base_url.rstrip("/")
    file_url = base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url + "/file/bot"
    return Bot(
        token,
        base_url=base_url,
        base_file_url=file_url,
        request=MeteredRequest(connection_pool_size=CONNECTIONS, pool_timeout=30.0),
    )  # getUpdates goes through polling.Poller's own connection


async def _sign_in(bot: Bot, settings: Settings) -> BotIdentity:
    """getMe: the token is checked before anything else starts."""
    where = public_url(settings.telegram_api_base_url)
    try:
        await bot.initialize()
    except InvalidToken:
        raise ConfigError(f"TELEGRAM_BOT_TOKEN was rejected by {where}: check the token from @BotFather") from None
    except NetworkError as error:
        raise HostError(f"cannot reach the Bot API at {where}: {error}") from None
    except TelegramError as error:
        raise HostError(f"the Bot API at {where} refused getMe: {error}") from None
    log.info("signed_in", bot=bot.username, api=where)
    return BotIdentity(bot.id, bot.username)


async def _serve(app: App, bot: Bot, identity: BotIdentity, front: FrontEnd, stop: _Stop) -> None:
    settings = app.settings
    answer_all = settings.telegram_group_trigger == "all"

    alone = not settings.telegram_webhook_url  # polling: the only process of this bot token
    recovery = Recovery(front, alone=alone)
    async with (
        ChatQueues[Incoming | Orphan](recovery.handle, recovery.abandon) as queues,
        anyio.create_task_group() as chores,
    ):

        def owed(orphan: Orphan) -> None:
            queues.submit((orphan.chat_id, orphan.topic_id), orphan)

        def accept(update: Update) -> None:
            try:
                message = incoming(update, identity, answer_all_in_groups=answer_all)
            except Exception:  # one unreadable update must not stop the bot
                log.exception("update_not_read", update_id=update.update_id)
                return
            if message is not None:
                queues.submit((message.chat_id, message.topic_id), message)

        chores.start_soon(app.service.forget_old)
        chores.start_soon(Sender(app.service.broadcasting, bot, settings.broadcast_per_second, alone=alone).run)
        await recovery.start(owed)  # before the first update is read: a chat's older message goes first
        chores.start_soon(recovery.keep, owed)
        source = (
            serving_webhook(app, bot, accept, allowed_updates=ALLOWED_UPDATES)
            if settings.telegram_webhook_url
            else polling(
                bot,
                accept,
                stop.fail,
                allowed_updates=ALLOWED_UPDATES,
                backoff_cap=settings.telegram_poll_retry_max_seconds,
            )
        )
        webhook_serves_probes = bool(settings.telegram_webhook_url) and settings.metrics_port in (
            None,
            settings.webhook_port,
        )
        probes = nullcontext() if webhook_serves_probes else serving_probes(app)
        async with probes, source:
            stop.serving = True
            log.info("bot_running", mode="webhook" if settings.telegram_webhook_url else "polling")
            await stop.requested.wait()
        log.info("bot_stopping", turns_running=queues.busy, grace_seconds=settings.shutdown_grace_seconds)
        if not await queues.finish(settings.shutdown_grace_seconds):
            log.warning("shutdown_grace_over", cancelling=queues.busy)
        chores.cancel_scope.cancel()
    log.info("bot_stopped")
