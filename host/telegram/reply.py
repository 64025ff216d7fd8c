"""One answer on its way to a chat: a live preview while the engine works, then the final text.

Private chats see the preview as a message draft (sendMessageDraft), other chats as one message edited at most
once per EDIT_INTERVAL. Flood control pauses the preview, never the answer. While tools run, the preview shows
a line per call under the text so far; the final answer replaces it, split into valid parts when long. A preview
renders only the end of the text that it shows; a text the renderer fails on is sent as plain text.
"""

import html as html_lib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import structlog
from telegram import Bot
from telegram.constants import ChatAction, ParseMode
from telegram.error import RetryAfter, TelegramError

from host.telegram.markdown import to_telegram_html
from host.telegram.send import Target, edit_html, retry_after_seconds, send_html
from host.telegram.split import split_message

log = structlog.get_logger("host.telegram")

EDIT_INTERVAL = 1.0  # editMessageText: about one edit a second per message stays clear of flood control
DRAFT_INTERVAL = 0.5  # sendMessageDraft sustains a few updates a second
DRAFT_REFRESH = 20.0  # a draft disappears after 30 s without an update
TYPING_EVERY = 4.5  # "typing..." shows for 5 s
TYPING_AFTER = 1.0  # a turn that has shown nothing this long shows "typing..."
FIRST_TEXT_AFTER = 0.5  # the first text is previewed once it has been streaming (two pieces or more) this long
PREVIEW_LIMIT = 3500  # leaves room for the tool lines under the text
PREVIEW_SOURCE = 2 * PREVIEW_LIMIT  # characters of the text's end that a preview renders (from a line start)
FIRST_PREVIEW_SECONDS = 5.0  # the preview message's sendMessage may finish this long after the turn


@dataclass(slots=True)
class _Activity:
    call_id: str
    label: str
    state: str = "running"  # running | ok | failed


@dataclass(slots=True)
class _Text:
    """The answer so far, kept as pieces: appending a streamed delta costs its own length only."""

    pieces: list[str] = field(default_factory=list)
    length: int = 0

    def add(self, text: str) -> None:
        self.pieces.append(text)
        self.length += len(text)

    def tail(self, size: int) -> str:
        """The last `size` characters or a little more (whole pieces), cheaply."""
        taken, count = [], 0
        for piece in reversed(self.pieces):
            taken.append(piece)
            count += len(piece)
            if count >= size:
                break
        return "".join(reversed(taken))

    def whole(self) -> str:
        if len(self.pieces) > 1:
            self.pieces = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""


class Reply:
    """Collects the turn's text and tool activity (the engine's events), shows it (`run_previews` in a task)
    and delivers the final answer (`finish`)."""

    def __init__(
        self,
        bot: Bot,
        target: Target,
        *,
        draft_id: int | None,
        on_preview_message: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        self.bot = bot
        self.target = target
        self.draft_id = draft_id  # set: preview as drafts (private chats); None: preview as an edited message
        self.on_preview_message = on_preview_message  # told each new preview message's id (crash recovery)
        self._text = _Text()
        self.activities: list[_Activity] = []
        self.preview_id: int | None = None  # the message being edited, in edit mode
        self._changed = anyio.Event()
        self._shown = ""
        self._not_before = 0.0
        self._last_shown = 0.0
        self._started = anyio.current_time()
        self._first_text_at: float | None = None
        self._deltas = 0
        self._last_typing = -TYPING_EVERY

    @property
    def text(self) -> str:
        """The text the engine has streamed since the last tools."""
        return self._text.whole()

    # -- what the engine reports ----------------------------------------------------------------------------
    def add_text(self, text: str) -> None:
        if self.activities and all(activity.state != "running" for activity in self.activities):
            # The tools are done and the model speaks again: what it said before them makes way, as the final
            # message will hold only the answer.
            self.activities = []
            self._text = _Text()
        self._text.add(text)
        self._deltas += 1
        if self._first_text_at is None:
            self._first_text_at = anyio.current_time()
        self._changed.set()

    def tool_started(self, call_id: str, server: str, tool: str, arguments: dict[str, object]) -> None:
        self.activities.append(_Activity(call_id, f"{server}: {tool} {_short(arguments)}".rstrip()))
        self._changed.set()

    def tool_finished(self, call_id: str, ok: bool) -> None:
        for activity in self.activities:
            if activity.call_id == call_id:
                activity.state = "ok" if ok else "failed"
                self._changed.set()

    # -- the preview ----------------------------------------------------------------------------------------
    async def run_previews(self) -> None:
        """Show the latest state at the allowed pace until cancelled (the preview message's first sendMessage
        finishes even then, so that its id is never lost)."""
        interval = DRAFT_INTERVAL if self.draft_id is not None else EDIT_INTERVAL
        while True:
            with anyio.move_on_after(interval):
                await self._changed.wait()
            self._changed = anyio.Event()
            wait = max(self._not_before, self._last_shown + interval) - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
            await self._show()

    def _preview_html(self) -> str:
        """The end of the text that fits one message (only that end is rendered), and the tool lines."""
        html = ""
        source = self._text.tail(PREVIEW_SOURCE)
        if len(source) < self._text.length:  # start at a line, so that the end renders as it will
            source = source[-PREVIEW_SOURCE:]
            source = source[source.find("\n") + 1 :] if "\n" in source else source
        if source.strip():
            parts = split_message(rendered(source), PREVIEW_LIMIT)
            html = parts[-1] if parts else ""
        lines = [f"{_MARK[a.state]} {html_lib.escape(a.label, quote=False)}" for a in self.activities[-5:]]
        if lines:
            html = f"{html}\n\n<i>{chr(10).join(lines)}</i>" if html else f"<i>{chr(10).join(lines)}</i>"
        return html

    async def _show(self) -> None:
        now = anyio.current_time()
        if now < self._not_before:
            return
        first_text = self._first_text_at if not self._shown and not self.activities else None
        if first_text is not None and (self._deltas < 2 or now - first_text < FIRST_TEXT_AFTER):
            # Text that came whole (a model that does not stream) or that is complete this soon needs no preview:
            # it is sent as the answer in a moment.
            return
        html = self._preview_html()
        try:
            if not html:
                if now - self._started >= TYPING_AFTER and now - self._last_typing >= TYPING_EVERY:
                    self._last_typing = now
                    await self.bot.send_chat_action(
                        self.target.chat_id, ChatAction.TYPING, message_thread_id=self.target.thread_id
                    )
                return
            stale_draft = self.draft_id is not None and now - self._last_shown >= DRAFT_REFRESH
            if html == self._shown and not stale_draft:
                return
            await self._send_preview(html)
            self._shown = html
            self._last_shown = anyio.current_time()
        except RetryAfter as error:
            self._not_before = anyio.current_time() + retry_after_seconds(error)
            log.info("telegram_preview_paused", chat_id=self.target.chat_id, seconds=retry_after_seconds(error))
        except TelegramError as error:  # a preview is optional: the final answer is what must arrive
            log.info("telegram_preview_failed", chat_id=self.target.chat_id, error=str(error))
            self._not_before = anyio.current_time() + EDIT_INTERVAL
        except Exception:  # not even a bug here may cost the answer
            log.exception("telegram_preview_failed", chat_id=self.target.chat_id)
            self._not_before = anyio.current_time() + EDIT_INTERVAL

    async def _send_preview(self, html: str) -> None:
        """One attempt, no waiting: a 429 here only pauses the previews (see _show)."""
        if self.draft_id is not None:
            await self.bot.send_message_draft(
                self.target.chat_id,
                self.draft_id,
                html,
                message_thread_id=self.target.thread_id,
                parse_mode=ParseMode.HTML,
            )
        elif self.preview_id is None:
            # Shielded, so that a message Telegram made is never left without its id (and then duplicated).
            with anyio.move_on_after(FIRST_PREVIEW_SECONDS, shield=True):
                self.preview_id = (await send_html(self.bot, self.target, html, patient=False)).message_id
                if self.on_preview_message is not None:
                    await self.on_preview_message(self.preview_id)
        elif not await edit_html(self.bot, self.target, self.preview_id, html, patient=False):
            self.preview_id = None

    # -- the answer -----------------------------------------------------------------------------------------
    async def finish(self, markdown: str) -> None:
        """Deliver the final text: the preview message becomes its first part, the rest follow as new messages.
        Raises TelegramError only when a part could not be delivered after the retries."""
        parts = split_message(rendered(markdown)) or ["…"]
        first, rest = parts[0], parts[1:]
        if self.preview_id is not None:  # the last preview edit was a moment ago: keep to the pace
            # (a 429 that paused the previews is left to the patient send, which gives up past MAX_FLOOD_WAIT)
            wait = self._last_shown + EDIT_INTERVAL - anyio.current_time()
            if wait > 0:
                await anyio.sleep(wait)
        if self.preview_id is None or not await edit_html(self.bot, self.target, self.preview_id, first):
            await send_html(self.bot, self.target, first)
        for part in rest:
            await send_html(self.bot, self.target, part, reply=False)


_MARK = {"running": "⏳", "ok": "✓", "failed": "✗"}


def rendered(markdown: str) -> str:
    """The text as Telegram HTML; as escaped plain text if the renderer fails (the answer is never lost)."""
    try:
        return to_telegram_html(markdown)
    except Exception:
        log.exception("render_failed", chars=len(markdown))
        return html_lib.escape(markdown, quote=False)


def _short(arguments: dict[str, object], limit: int = 60) -> str:
    text = ", ".join(f"{key}={value}" for key, value in arguments.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"
