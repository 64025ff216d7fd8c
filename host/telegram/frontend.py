"""The bot's behaviour for one incoming message in Telegram: the service's gate, commands, a turn streamed back,
and a short plain message for every failure the user can meet.

Thin on purpose: the service and the engine decide what happens; this module decides how it reaches Telegram.
Imports the app, the service, the errors and the Telegram package only.
"""

import html
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

import anyio
import structlog
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import Forbidden, TelegramError

from host.app import App
from host.errors import HostError, ModelUnavailable, StorageError
from host.redact import redact_clipped
from host.service import (
    MAX_SYSTEM_CHARS,
    BinaryPart,
    ChatSettingsView,
    EngineEvent,
    Refused,
    Request,
    SettingRefused,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    Who,
)
from host.telegram import forget, toggles
from host.telegram.admin import admin_command
from host.telegram.export import send_export
from host.telegram.incoming import ADMIN_COMMANDS, COMMANDS, Incoming
from host.telegram.media import send_media
from host.telegram.reply import Reply
from host.telegram.send import Target, send_html
from host.telegram.split import split_message

log = structlog.get_logger("host.telegram")

MODEL_DOWN = "⚠️ The model is not answering right now. Your message is saved; send it again in a minute."
STORAGE_DOWN = "⚠️ I cannot reach my database right now, so I could not answer. Please try again in a minute."
FAILED = "⚠️ Something went wrong on my side and it has been logged. Please try again."
RATE_LIMITED = "⏳ Too many messages right now. Try again in {seconds} s."
BLOCKED = "You cannot use this bot. (You will not hear this again today.)"
NOT_ALLOWED = "This bot is private. Ask its operator for access. (You will not hear this again today.)"
STOPPED = "⚠️ I was restarted before I could answer. Your message is saved; please send it again."
STOP_NOTE_SECONDS = 3.0
NOT_STARTED = "⚠️ I was restarted before I got to this message. Please send it again."
UNREADABLE = "I can only read text messages for now."
REASON_MAX_CHARS = 500  # of a server's failure reason, shown to admins
TOO_LONG = "⚠️ This message is longer than Telegram allows, so I did not read it. Please send it shorter."
NO_TEXT = "Send me a question after the mention, for example: @{username} what can you do?"
MODEL_BUTTON = "model:"  # a /model button's callback data: this, then the model's name
CALLBACK_DATA_BYTES = 64  # Telegram's limit: a model with a longer name gets no button, only /model NAME
USAGE_PRIVATE = "Send /usage in a private chat with me: I do not post your figures where others read."
STALE_BUTTON = "This button is no longer valid. Send /model to choose again."


class FrontEnd:
    """Handles each Incoming to the end; never raises for a single message's failure."""

    def __init__(self, app: App, bot: Bot) -> None:
        self.app = app
        self.service = app.service
        self.bot = bot

    async def handle(self, message: Incoming) -> None:
        with structlog.contextvars.bound_contextvars(
            chat_id=message.chat_id, user_id=message.user_id, update_id=message.update_id
        ):
            target = _target(message)
            request = _request(message)
            try:
                refusal = await self.service.admit(request, turn=message.kind == "text")
                if refusal is not None:
                    notice = None if refusal.reason == "repeated" else self._refusal_text(refusal)
                    if message.kind == "callback" and refusal.reason != "repeated":
                        await self._answer_button(message, notice or "")  # the spinner stops even when silent
                    elif notice is not None:
                        await self._tell(target, notice)
                elif message.kind == "callback":
                    await self._button(message, target)
                elif message.kind == "unreadable":
                    await send_html(self.bot, target, UNREADABLE)
                elif message.kind == "too_long":
                    log.warning("message_refused", reason="over Telegram's length limit")
                    self.service.refused(request)
                    await self._tell(target, TOO_LONG)
                elif message.kind == "command":
                    await self._command(message, target)
                else:
                    await self.deliver_turn(
                        self.service.turn(request), target, message.update_id, private=message.private
                    )
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

    def _refusal_text(self, refusal: Refused) -> str | None:
        """What to tell the user, or None: say nothing (a blocked or not-allowed user hears it once a day)."""
        if not refusal.notify:
            return None
        if refusal.reason == "blocked":
            return BLOCKED
        if refusal.reason == "not_allowed":
            return NOT_ALLOWED
        if refusal.reason == "empty":
            return NO_TEXT.format(username=self.bot.username)
        if refusal.budget is not None:
            return refusal.budget.text
        return RATE_LIMITED.format(seconds=refusal.seconds)

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
    async def deliver_turn(
        self, turn: AsyncGenerator[EngineEvent, None], target: Target, update_id: int, *, private: bool
    ) -> None:
        """Stream a turn to the chat and deliver its answer, or what went wrong; then nothing is owed for the
        update any more (host.storage.pending: a crash before then leaves the message to crash recovery)."""

        async def preview_shown(message_id: int) -> None:
            await self.service.preview_shown(update_id, message_id)

        reply = Reply(self.bot, target, draft_id=update_id if private else None, on_preview_message=preview_shown)
        answer, note = "", None
        media: list[BinaryPart] = []  # what tools gave back to show, sent after the answer
        started = time.perf_counter()
        async with anyio.create_task_group() as previews:
            previews.start_soon(reply.run_previews)
            try:
                finished = await self._run_turn(turn, reply, media)
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
                    await self.service.delivered(update_id)  # the user was told to send it again
                raise
            finally:
                previews.cancel_scope.cancel()
        if note is not None:
            answer = f"{reply.text.rstrip()}\n\n{note}" if reply.text.strip() else note
        try:
            await reply.finish(answer)
            await send_media(self.bot, target, media)
        finally:
            await self.service.delivered(update_id)
        log.info("reply_sent", seconds=round(time.perf_counter() - started, 3), failed=note is not None)

    async def _run_turn(
        self, turn: AsyncGenerator[EngineEvent, None], reply: Reply, media: list[BinaryPart]
    ) -> str | None:
        """The answer's text, with what tools gave back to show added to `media`; None when the update was
        answered before (the engine then does nothing)."""
        finished = None
        async with aclosing(turn) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    reply.add_text(event.text)
                elif isinstance(event, ToolStarted):
                    reply.tool_started(event.call_id, event.server, event.tool, event.arguments)
                elif isinstance(event, ToolFinished):
                    reply.tool_finished(event.call_id, event.ok)
                    media.extend(event.media)
                elif isinstance(event, TurnFinished):
                    finished = event.text
        return finished

    # -- commands ---------------------------------------------------------------------------------------------
    async def _command(self, message: Incoming, target: Target) -> None:
        name = message.text
        if name in ADMIN_COMMANDS and self.service.is_admin(message.user_id):
            await admin_command(self.service, self.bot, message, target)
        elif name in SETTINGS_COMMANDS or (name == "reset" and message.args):
            await self._settings_command(message, target)
        elif name == "mcp":
            await toggles.command(self.service, self.bot, message, target, _who(message))
        elif name == "usage":
            private = message.private and message.user_id is not None
            await self._tell(target, (await self.service.usage_of(message.user_id)).text if private else USAGE_PRIVATE)
        elif name == "forget":
            await forget.ask(self.bot, message, target)
        elif name == "export":
            await send_export(self.service, self.bot, message, target)
        elif name == "reset":
            await self.service.reset(message.chat_id, message.topic_id)
            text = "Started a new conversation. I no longer see the earlier messages."
            await send_html(self.bot, target, text)
        elif name == "tools":
            await self._send_long(target, await self._tools_text(message.chat_id))
        elif name == "servers":
            admin = self.service.is_admin(message.user_id)
            await self._send_long(target, await self._servers_text(message.chat_id, admin=admin))
        elif name == "start":
            view = await self.service.chat_settings(message.chat_id, message.topic_id)
            await send_html(self.bot, target, self._start_text(message, view.model))
        else:
            await send_html(self.bot, target, self._help_text(message))

    # -- a chat's own settings --------------------------------------------------------------------------------
    async def _settings_command(self, message: Incoming, target: Target) -> None:
        """/settings, /model [NAME], /temperature [X], /system [TEXT|off], /reset settings. A refusal changes
        nothing and says why."""
        who = _who(message)
        name, args = message.text, message.args
        result: ChatSettingsView | SettingRefused
        if name == "reset":
            if args.lower() != "settings":
                await self._tell(target, "Send /reset for a new conversation, or /reset settings for the defaults.")
                return
            result = await self.service.reset_settings(who)
            done = "This chat's settings are back to the defaults."
        elif name == "settings" or (not args and name != "model"):
            await send_html(
                self.bot, target, self._settings_text(await self.service.chat_settings(who.chat_id, who.topic_id))
            )
            return
        elif name == "model" and not args:
            await self._model_menu(message, target)
            return
        elif name == "model":
            result = await self.service.choose_model(who, args)
            done = "The model for this chat is now {model}."
        elif name == "temperature":
            result = await self.service.choose_temperature(who, args)
            done = "The temperature for this chat is now {temperature:g}."
        else:
            result = await self.service.choose_system_prompt(who, args)
            done = "Your system prompt for this chat is set." if args.lower() != "off" else ""
            done = done or "Your system prompt for this chat is cleared."
        if isinstance(result, SettingRefused):
            await self._tell(target, result.text)
        else:
            await self._tell(target, done.format(model=result.model, temperature=result.temperature))

    async def _model_menu(self, message: Incoming, target: Target) -> None:
        view = await self.service.chat_settings(message.chat_id, message.topic_id)
        if len(view.models) == 1:
            await self._tell(target, SettingRefused("no_choice", view.models).text)
            return
        buttons = [
            [InlineKeyboardButton(("✓ " if model == view.model else "") + model, callback_data=MODEL_BUTTON + model)]
            for model in view.models
            if len((MODEL_BUTTON + model).encode()) <= CALLBACK_DATA_BYTES
        ]
        text = f"This chat's model is <b>{html.escape(view.model)}</b>. Choose another, or send /model NAME."
        if not self.service.may_change_settings(_who(message)):
            text += "\n\nIn a group only the bot's admins can change it."
        await send_html(self.bot, target, text, markup=InlineKeyboardMarkup(buttons))

    async def _button(self, message: Incoming, target: Target) -> None:
        """A /model button: its data is checked like any text from a user (it can be forged or stale); a button
        that is not one of ours, or no longer offered, or not this user's to press, changes nothing and is
        answered with why."""
        data = message.text
        if toggles.is_toggle_button(data) and message.chat_id != 0:
            await self._answer_button(message, await toggles.pressed(self.service, self.bot, message, _who(message)))
            return
        if forget.is_forget_button(data):
            text = await forget.confirmed(self.service, message)
            await self._answer_button(message, text)
            await self._tell(target, text)
            return
        if message.chat_id == 0 or not data.startswith(MODEL_BUTTON):
            log.info("button_refused", reason="not ours")
            await self._answer_button(message, STALE_BUTTON)
            return
        result = await self.service.choose_model(_who(message), data[len(MODEL_BUTTON) :])
        if isinstance(result, SettingRefused):
            log.info("button_refused", reason=result.reason)
            await self._answer_button(message, STALE_BUTTON if result.reason == "unknown_model" else result.text)
            return
        await self._answer_button(message, f"Model: {result.model}")
        await self._tell(target, f"The model for this chat is now {result.model}.")

    async def _answer_button(self, message: Incoming, text: str) -> None:
        """answerCallbackQuery: the client stops its spinner and shows the text; a failure only costs that."""
        if message.callback_id is None:
            return
        try:
            await self.bot.answer_callback_query(message.callback_id, text=text[:200])
        except TelegramError as error:
            log.warning("button_not_answered", error=str(error))

    def _settings_text(self, view: ChatSettingsView) -> str:
        default = " (the default)"
        lines = [
            f"Model: <b>{html.escape(view.model)}</b>{default if view.model_is_default else ''}",
            f"Temperature: <b>{view.temperature:g}</b>{default if view.temperature_is_default else ''}",
        ]
        if view.system_prompt:
            lines.append(f"Your system prompt: <i>{html.escape(view.system_prompt)}</i>")
        else:
            lines.append("Your system prompt: none")
        choices = ", ".join(html.escape(model) for model in view.models)
        lines.append(
            f"\nChange them with /model ({choices}), /temperature 0-2, /system TEXT (at most {MAX_SYSTEM_CHARS:,}"
            " characters; /system off clears it); /reset settings restores the defaults."
        )
        return "\n".join(lines)

    async def _send_long(self, target: Target, html_text: str) -> None:
        for index, part in enumerate(split_message(html_text)):
            await send_html(self.bot, target, part, reply=index == 0)

    def _start_text(self, message: Incoming, model: str) -> str:
        """Hello, with the model this chat is answered with."""
        model = html.escape(model)
        return f"Hi! I answer with <b>{model}</b> and can use tools from MCP servers.\n\n{self._help_text(message)}"

    def _help_text(self, message: Incoming) -> str:
        lines = [f"/{name} - {description}" for name, description in COMMANDS.items()]
        text = "Write to me and I answer. Commands:\n" + "\n".join(lines)
        if not message.private:
            text += f"\n\nIn groups I answer when you mention @{html.escape(self.bot.username)} or reply to me."
        return text

    async def _tools_text(self, chat_id: int) -> str:
        """Each connected server's tools; the others by name and status word only."""
        tools = await self.service.tools(chat_id)
        if not tools:
            return "No tools are available right now. /servers shows why."
        down = [
            f"{html.escape(server.name)} ({server.state})"
            for server in await self.service.servers(chat_id)
            if not server.connected
        ]
        by_server: dict[str, list[str]] = {}
        for tool in tools:
            line = f"• <code>{html.escape(tool.mcp_name)}</code> {html.escape(tool.summary)}".rstrip()
            by_server.setdefault(tool.server, []).append(line)
        blocks = [f"<b>{html.escape(server)}</b>\n" + "\n".join(lines) for server, lines in by_server.items()]
        if down:
            blocks.append("Not available right now: " + ", ".join(down))
        return "\n\n".join(blocks)

    async def _servers_text(self, chat_id: int, *, admin: bool = False) -> str:
        """The model and each server with a status word. A failure's reason (a server's stderr, a URL) may
        hold secrets, so only admins see it, and redacted."""
        model_ok = await self.service.model_answers()
        lines = [
            f"{'✓' if model_ok else '✗'} model <b>{html.escape(self.app.settings.llm_model_name)}</b>: "
            f"{'answering' if model_ok else 'not answering'}"
        ]
        for server in await self.service.servers(chat_id):
            state = f"connected, {server.tools} tools" if server.connected else server.state
            if admin and server.reason:
                state += f": {redact_clipped(server.reason, REASON_MAX_CHARS)}"
            lines.append(f"{'✓' if server.connected else '✗'} <b>{html.escape(server.name)}</b>: {html.escape(state)}")
        return "\n".join(lines)


SETTINGS_COMMANDS = frozenset({"settings", "model", "temperature", "system"})


def _who(message: Incoming) -> Who:
    return Who(message.chat_id, message.topic_id, message.user_id, message.private)


def _request(message: Incoming) -> Request:
    return Request(
        chat_id=message.chat_id,
        text=message.text,
        topic_id=message.topic_id,
        user_id=message.user_id,
        update_id=message.update_id,
        route={"message_id": message.message_id, "private": message.private},
    )


def _target(message: Incoming) -> Target:
    """Replies go to the chat and topic; in groups they answer the message that asked."""
    return Target(message.chat_id, message.thread_id, None if message.private else message.message_id)
