"""The bot's behaviour for one incoming message: answered once, commands, rate limits, a turn of the engine
streamed back, and a short plain message for every failure the user can meet.

Thin on purpose: the engine decides what is said; this module decides how it reaches Telegram.
"""

import html
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio
import structlog
from telegram import Bot
from telegram.error import Forbidden, TelegramError

from host.app import App
from host.engine.llm import ModelUnavailable, TextDelta
from host.engine.loop import EngineEvent, ToolFinished, ToolStarted, TurnFinished
from host.errors import HostError
from host.mcp.connection import Status
from host.ratelimit import RateLimiter
from host.redact import redact_clipped
from host.storage.repository import StorageError
from host.telegram.incoming import COMMANDS, Incoming
from host.telegram.render import split_message
from host.telegram.reply import Reply
from host.telegram.send import Target, send_html

log = structlog.get_logger("host.telegram")

MODEL_DOWN = "⚠️ The model is not answering right now. Your message is saved; send it again in a minute."
STORAGE_DOWN = "⚠️ I cannot reach my database right now, so I could not answer. Please try again in a minute."
FAILED = "⚠️ Something went wrong on my side and it has been logged. Please try again."
RATE_LIMITED = "⏳ Too many messages right now. Try again in {seconds} s."
STOPPED = "⚠️ I was restarted before I could answer. Your message is saved; please send it again."
STOP_NOTE_SECONDS = 3.0
NOT_STARTED = "⚠️ I was restarted before I got to this message. Please send it again."
UNREADABLE = "I can only read text messages for now."
REASON_MAX_CHARS = 500  # of a server's failure reason, shown to admins
TOO_LONG = "⚠️ This message is longer than Telegram allows, so I did not read it. Please send it shorter."
NO_TEXT = "Send me a question after the mention, for example: @{username} what can you do?"


class FrontEnd:
    """Handles each Incoming to the end; never raises for a single message's failure."""

    def __init__(self, app: App, bot: Bot, limiter: RateLimiter, *, admins: frozenset[int] = frozenset()) -> None:
        self.app = app
        self.bot = bot
        self.limiter = limiter
        self.admins = admins

    async def handle(self, message: Incoming) -> None:
        with structlog.contextvars.bound_contextvars(
            chat_id=message.chat_id, user_id=message.user_id, update_id=message.update_id
        ):
            target = _target(message)
            try:
                if message.kind != "text" and not await self.app.store.claim_update(message.update_id):
                    log.info("update_repeated", action="ignored")
                    return  # a text message is claimed by its turn, in the transaction that stores it
                if message.kind == "unreadable":
                    await send_html(self.bot, target, UNREADABLE)
                elif message.kind == "too_long":
                    log.warning("message_refused", reason="over Telegram's length limit")
                    await self._tell(target, TOO_LONG)
                elif message.kind == "command":
                    await self._command(message, target)
                else:
                    await self._answer(message, target)
            except Forbidden as error:  # blocked by the user, removed from the group: nobody to tell
                log.info("chat_unreachable", error=error.message)
            except TelegramError as error:
                log.warning("reply_not_delivered", error=str(error))
            except StorageError as error:
                log.error("turn_failed", cause="storage", error=str(error))
                await self._tell(target, STORAGE_DOWN)
            except Exception:
                log.exception("turn_failed", cause="bug")
                await self._tell(target, FAILED)

    async def abandon(self, message: Incoming) -> None:
        """The bot stops before this message's turn began: say so (it was not stored)."""
        with structlog.contextvars.bound_contextvars(
            chat_id=message.chat_id, user_id=message.user_id, update_id=message.update_id
        ):
            log.warning("message_not_answered", reason="shutting down")
            if message.kind == "text":
                await self._tell(_target(message), NOT_STARTED)

    async def _tell(self, target: Target, text: str) -> None:
        try:
            await send_html(self.bot, target, html.escape(text, quote=False))
        except TelegramError as error:
            log.warning("reply_not_delivered", error=str(error))

    # -- turns ------------------------------------------------------------------------------------------------
    async def _answer(self, message: Incoming, target: Target) -> None:
        if not message.text.strip():
            refusal: str | None = NO_TEXT.format(username=self.bot.username)
        else:
            refusal = await self._over_limit(message)
        if refusal is not None:
            if await self.app.store.claim_update(message.update_id):
                await self._tell(target, refusal)
            return
        turn = self.app.engine.turn(
            message.chat_id,
            message.text,
            user_id=message.user_id,
            topic_id=message.topic_id,
            update_id=message.update_id,
            route={"message_id": message.message_id, "private": message.private},
        )
        await self.deliver_turn(turn, target, message.update_id, private=message.private)

    async def deliver_turn(
        self, turn: AsyncGenerator[EngineEvent, None], target: Target, update_id: int, *, private: bool
    ) -> None:
        """Stream a turn to the chat and deliver its answer, or what went wrong; then nothing is owed for the
        update any more (host.storage.pending: a crash before then leaves the message to crash recovery)."""

        async def preview_shown(message_id: int) -> None:
            try:
                await self.app.store.preview_shown(update_id, message_id)
            except StorageError as error:  # only costs the "cut off" mark after a crash
                log.warning("preview_not_recorded", error=str(error))

        reply = Reply(self.bot, target, draft_id=update_id if private else None, on_preview_message=preview_shown)
        answer, note = "", None
        started = time.perf_counter()
        async with anyio.create_task_group() as previews:
            previews.start_soon(reply.run_previews)
            try:
                finished = await self._run_turn(turn, reply)
                if finished is None:
                    log.info("update_repeated", action="ignored")
                    return
                answer = finished
            except ModelUnavailable as error:
                log.error("turn_failed", cause="model", error=str(error))
                note = MODEL_DOWN
            except StorageError as error:
                log.error("turn_failed", cause="storage", error=str(error))
                note = STORAGE_DOWN
            except HostError as error:
                log.error("turn_failed", cause=type(error).__name__, error=str(error))
                note = FAILED
            except Exception:
                log.exception("turn_failed", cause="bug")
                note = FAILED
            except anyio.get_cancelled_exc_class():  # the bot is stopping and the grace time is over
                with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_NOTE_SECONDS):
                    log.warning("turn_failed", cause="shutdown")
                    await self._tell(target, STOPPED)
                    await self.delivered(update_id)  # the user was told to send it again
                raise
            finally:
                previews.cancel_scope.cancel()
        if note is not None:
            answer = f"{reply.text.rstrip()}\n\n{note}" if reply.text.strip() else note
        try:
            await reply.finish(answer)
        finally:
            await self.delivered(update_id)
        log.info("reply_sent", seconds=round(time.perf_counter() - started, 3), failed=note is not None)

    async def delivered(self, update_id: int) -> None:
        """Nothing is owed for the update any more; a failure to record it is logged (it may be answered again
        after a crash)."""
        try:
            await self.app.store.reply_delivered(update_id)
        except StorageError as error:
            log.warning("delivery_not_recorded", error=str(error))

    async def _run_turn(self, turn: AsyncGenerator[EngineEvent, None], reply: Reply) -> str | None:
        """The answer's text; None when the update was answered before (the engine then does nothing)."""
        finished = None
        async with aclosing(turn) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    reply.add_text(event.text)
                elif isinstance(event, ToolStarted):
                    reply.tool_started(event.call_id, event.server, event.tool, event.arguments)
                elif isinstance(event, ToolFinished):
                    reply.tool_finished(event.call_id, event.ok)
                elif isinstance(event, TurnFinished):
                    finished = event.text
        return finished

    # -- commands ---------------------------------------------------------------------------------------------
    async def _command(self, message: Incoming, target: Target) -> None:
        refusal = await self._over_limit(message)
        if refusal is not None:
            await send_html(self.bot, target, html.escape(refusal, quote=False))
            return
        name = message.text
        admin = message.user_id in self.admins
        if name == "reset":
            await self.app.engine.reset(message.chat_id, message.topic_id)
            text = "Started a new conversation. I no longer see the earlier messages."
            await send_html(self.bot, target, text)
        elif name == "tools":
            await self._send_long(target, await self._tools_text(message.chat_id))
        elif name == "servers":
            await self._send_long(target, await self._servers_text(message.chat_id, admin=admin))
        elif name == "start":
            await send_html(self.bot, target, self._start_text(message))
        else:
            await send_html(self.bot, target, self._help_text(message))

    async def _over_limit(self, message: Incoming) -> str | None:
        """The reply for a user over the rate limit (admins never are); None when the message may go on."""
        if message.user_id is None or message.user_id in self.admins:
            return None
        wait = await self.limiter.admit(message.user_id)
        if wait <= 0:
            return None
        log.info("rate_limited", seconds=round(wait, 1))
        return RATE_LIMITED.format(seconds=max(1, round(wait)))

    async def _send_long(self, target: Target, html_text: str) -> None:
        for index, part in enumerate(split_message(html_text)):
            await send_html(self.bot, target, part, reply=index == 0)

    def _start_text(self, message: Incoming) -> str:
        model = html.escape(self.app.settings.llm_model_name)
        return f"Hi! I answer with <b>{model}</b> and can use tools from MCP servers.\n\n{self._help_text(message)}"

    def _help_text(self, message: Incoming) -> str:
        lines = [f"/{name} - {description}" for name, description in COMMANDS.items()]
        text = "Write to me and I answer. Commands:\n" + "\n".join(lines)
        if not message.private:
            text += f"\n\nIn groups I answer when you mention @{html.escape(self.bot.username)} or reply to me."
        return text

    async def _tools_text(self, chat_id: int) -> str:
        """Each connected server's tools; the others by name and status word only."""
        catalogue = await self.app.registry.catalogue(chat_id)
        if not catalogue:
            return "No tools are available right now. /servers shows why."
        down = [
            f"{html.escape(connection.name)} ({connection.status.value})"
            for connection in await self.app.registry.connections(chat_id)
            if connection.status is not Status.CONNECTED
        ]
        by_server: dict[str, list[str]] = {}
        for entry in catalogue:
            summary = (entry.spec.description.strip().splitlines() or [""])[0][:120]
            line = f"• <code>{html.escape(entry.spec.name)}</code> {html.escape(summary)}".rstrip()
            by_server.setdefault(entry.spec.server, []).append(line)
        blocks = [f"<b>{html.escape(server)}</b>\n" + "\n".join(lines) for server, lines in by_server.items()]
        if down:
            blocks.append("Not available right now: " + ", ".join(down))
        return "\n\n".join(blocks)

    async def _servers_text(self, chat_id: int, *, admin: bool = False) -> str:
        """The model and each server with a status word. A failure's reason (a server's stderr, a URL) may
        hold secrets, so only admins see it, and redacted."""
        settings = self.app.settings
        model_ok = await self.app.model.healthy()
        lines = [
            f"{'✓' if model_ok else '✗'} model <b>{html.escape(settings.llm_model_name)}</b>: "
            f"{'answering' if model_ok else 'not answering'}"
        ]
        for connection in await self.app.registry.connections(chat_id):
            connected = connection.status is Status.CONNECTED
            state = f"connected, {len(connection.tools)} tools" if connected else connection.status.value
            if admin and not connected and connection.error:
                state += f": {redact_clipped(connection.error, REASON_MAX_CHARS)}"
            lines.append(f"{'✓' if connected else '✗'} <b>{html.escape(connection.name)}</b>: {html.escape(state)}")
        return "\n".join(lines)


def _target(message: Incoming) -> Target:
    """Replies go to the chat and topic; in groups they answer the message that asked."""
    return Target(message.chat_id, message.thread_id, None if message.private else message.message_id)
