"""A fake Telegram Bot API server that tests script and inspect (Starlette + uvicorn on 127.0.0.1).

It speaks the Bot API over real HTTP, so python-telegram-bot (in process, or `mcpbot run` in a subprocess) is
pointed at it with `ApplicationBuilder().base_url(api.base_url).base_file_url(api.base_file_url)`. It runs in a
thread of its own; every helper is thread-safe. Imports nothing from the host.

    with FakeBotAPI() as api:
        api.push_message(42, "hello")                          # a user writes to the bot
        api.wait_until(lambda: api.texts(42) == ["hello"])     # sync tests (blocks this thread)
        await api.wait_for(lambda: len(api.sent(42)) >= 1)     # async tests (never blocks the loop)
        api.flood("sendMessage", times=1, retry_after=3)       # the next sendMessage answers 429
        api.flood_limit(per_second=30)                         # a sendMessage past 30 in a rolling second: 429
        api.block_bot(42)                                      # sendMessage to 42: 403 "bot was blocked"
        api.fail("getUpdates", 502, "Bad Gateway", times=3)    # the next 3 polls answer 502
        api.drop("getUpdates")                                 # the next poll gets its connection closed
        api.push_update({"message": {"message_id": 1, "text": "no date, no chat"}})  # a malformed update
        assert api.commands[0]["command"] == "start"
        api.documents(42)[0]["data"]                           # a file the bot sent with sendDocument

Like Telegram it checks the token (401), rejects unknown methods (404), validates parse_mode="HTML" text
(unknown or unbalanced tags, 400 "can't parse entities"), counts the 4096 limit in UTF-16 code units, answers
"message is not modified" to an edit that changes nothing and 409 to getUpdates while a webhook is set.
Markdown parse modes are accepted as they are, not parsed. getUpdates confirms, like Telegram, every delivered
update below `offset`; an update pushed again with an old update_id is delivered again (to test de-duplication).
Faults are injected per method, in order: `fail` (an error, or a proxy's HTML page), `flood` (429), `drop` (the
connection closed unanswered), `stall` (a late answer) and `answer` (a result as it is). Like Telegram's flood
control, `flood_limit` answers 429 to a sendMessage beyond a number within any rolling second (each counted in
`flood_violations`), and a chat whose user `block_bot`s gets 403 for every sendMessage.
"""

import asyncio
import contextlib
import html
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.peers.threaded_server import ThreadedServer

MAX_TEXT_LENGTH = 4096
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # what a bot may upload (sendDocument, sendAudio)
MAX_PHOTO_BYTES = 10 * 1024 * 1024  # a photo (sendPhoto)
MAX_CAPTION_LENGTH = 1024
SEND_METHODS = ("sendMessage", "editMessageText", "sendMessageDraft")

# Form-encoded parameters that are strings even when they look like JSON (PTB sends str values as they are).
_TEXT_PARAMS = frozenset(
    {"text", "caption", "parse_mode", "url", "secret_token", "callback_query_id", "file_id", "language_code",
     "action", "ip_address", "inline_message_id", "business_connection_id", "query_id", "description",
     "short_description", "name"}
)  # fmt: skip

_TAG_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre", "blockquote": "blockquote",
}  # fmt: skip
_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]*")
_ATTRIBUTE = re.compile(r"\s+([a-zA-Z][a-zA-Z0-9_-]*)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+)))?")
_CHAR_REF = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]+);")
_NAMED_REFS = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_AUTO_ENTITIES = re.compile(r"(?P<bot_command>^/[a-zA-Z0-9_]+(?:@[a-zA-Z0-9_]+)?)|(?P<mention>@[a-zA-Z0-9_]{3,})")


class ApiError(Exception):
    """An error answer: `{"ok": false, "error_code": status, "description": description, ...}`."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None, *, raw_body: str | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters
        self.raw_body = raw_body  # sent as text/html instead of the JSON error, like a proxy in front of Telegram

    def response(self) -> Response:
        if self.raw_body is not None:
            return Response(self.raw_body, status_code=self.status, media_type="text/html")
        body: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return JSONResponse(body, status_code=self.status)


@dataclass(frozen=True, slots=True)
class Drop:
    """An injected fault: the connection is closed once the request is read, without an answer."""


@dataclass(frozen=True, slots=True)
class Stall:
    """An injected fault: the request is answered as usual, but only after `seconds`."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Answer:
    """An injected fault: `{"ok": true, "result": result}` whatever the request, e.g. malformed updates."""

    result: Any


Fault = ApiError | Drop | Stall | Answer


@dataclass(frozen=True, slots=True)
class Call:
    """One Bot API request as the server received it, with the HTTP status it answered."""

    method: str
    params: dict[str, Any]
    status: int
    at: float  # time.monotonic() on arrival


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: the plain text and its entities; raises ApiError(400) like Telegram."""

    def fail(reason: str) -> ApiError:
        return ApiError(400, f"Bad Request: can't parse entities: {reason}")

    def byte_offset(index: int) -> int:
        return len(text[:index].encode())

    out: list[str] = []
    length = 0  # of the output so far, in UTF-16 code units
    stack: list[tuple[str, int, dict[str, Any]]] = []  # tag, start, entity
    entities: list[dict[str, Any]] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "&":
            ref = _CHAR_REF.match(text, index)
            decoded = None
            if ref is not None:
                name = ref.group(1)
                if name.startswith("#"):
                    number = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
                    decoded = chr(number) if 0 < number < 0x110000 and not 0xD800 <= number < 0xE000 else None
                else:
                    decoded = _NAMED_REFS.get(name)
            if ref is None or decoded is None:  # Telegram keeps a "&" that starts no known entity
                out.append("&")
                length += 1
                index += 1
            else:
                out.append(decoded)
                length += utf16_len(decoded)
                index = ref.end()
        elif char == "<" and text.startswith("</", index):
            end = text.find(">", index)
            if end < 0:
                raise fail(f"Unclosed end tag at byte offset {byte_offset(index)}")
            name = text[index + 2 : end].strip().lower()
            if not stack:
                raise fail(f'Unexpected end tag at byte offset {byte_offset(index)}, found "</{name}>"')
            tag, start, entity = stack.pop()
            if name != tag:
                raise fail(
                    f'Unmatched end tag at byte offset {byte_offset(index)}, expected "</{tag}>", found "</{name}>"'
                )
            if entity and length > start:
                entities.append({**entity, "offset": start, "length": length - start})
            index = end + 1
        elif char == "<":
            match = _NAME.match(text, index + 1)
            name = match.group().lower() if match is not None else ""
            if match is None or name not in _TAG_TYPES:
                raise fail(f'Unsupported start tag "{name}" at byte offset {byte_offset(index)}')
            position = match.end()
            attributes: dict[str, str] = {}
            while (attribute := _ATTRIBUTE.match(text, position)) is not None:
                value = next((group for group in attribute.groups()[1:] if group is not None), "")
                attributes[attribute.group(1).lower()] = html.unescape(value)
                position = attribute.end()
            while position < len(text) and text[position].isspace():
                position += 1
            if position >= len(text) or text[position] != ">":
                raise fail(f'Unclosed start tag "{name}" at byte offset {byte_offset(index)}')
            entity = _entity(name, attributes, stack)
            if name == "span" and attributes.get("class") != "tg-spoiler":
                raise fail(f'Tag "span" must have class "tg-spoiler" at byte offset {byte_offset(index)}')
            stack.append((name, length, entity))
            index = position + 1
        else:
            out.append(char)
            length += 2 if ord(char) > 0xFFFF else 1
            index += 1
    if stack:
        raise fail(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda entity: (entity["offset"], -entity["length"]))
    return "".join(out), entities


def _entity(tag: str, attributes: dict[str, str], stack: list[tuple[str, int, dict[str, Any]]]) -> dict[str, Any]:
    """The entity a start tag opens ({} for none); <pre><code class="language-x"> sets the pre's language."""
    kind = _TAG_TYPES[tag]
    if tag == "a":
        return {"type": "text_link", "url": attributes["href"]} if attributes.get("href") else {}
    if tag == "code" and stack and stack[-1][0] == "pre":
        language = attributes.get("class", "")
        if language.startswith("language-") and len(language) > len("language-"):
            stack[-1][2]["language"] = language.removeprefix("language-")
        return {}
    if tag == "blockquote" and "expandable" in attributes:
        kind = "expandable_blockquote"
    return {"type": kind}


def _coerce(key: str, value: str) -> Any:
    """A form-encoded value as PTB meant it: PTB JSON-dumps everything but strings."""
    if key in _TEXT_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class FakeBotAPI:
    """The server; use it as a context manager (start on enter, stop on exit), one per test."""

    def __init__(self, token: str = "123456:TEST-TOKEN", *, username: str = "fake_bot") -> None:
        self.token = token
        self.username = username
        bot_id = token.split(":", 1)[0]
        self.bot_id = int(bot_id) if bot_id.isdigit() else 123456
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self._calls: list[Call] = []
        self._sent: list[dict[str, Any]] = []
        self._updates: list[tuple[dict[str, Any], list[bool]]] = []  # update, [delivered]
        self._last_update_id = 0
        self._chats: dict[int | str, dict[str, Any]] = {}
        self._message_ids: dict[int | str, itertools.count[int]] = {}
        self._messages: dict[tuple[int | str, int], dict[str, Any]] = {}  # the bot's, current state
        self._order: list[tuple[int | str, int]] = []
        self._deleted: set[tuple[int | str, int]] = set()
        self._injected: dict[str, list[Fault]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._documents: list[dict[str, Any]] = []
        self.commands: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {"url": "", "secret_token": None}
        self.actions: list[tuple[int | str, str]] = []
        self.callback_answers: list[dict[str, Any]] = []
        self._last_callback = 0
        self._per_second: int | None = None  # flood_limit: sendMessage calls allowed in any rolling second
        self._recent_sends: deque[float] = deque()  # arrival times of the sendMessage calls answered in the last second
        self.flood_violations = 0
        self._blocked_by: set[int | str] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "getMe": self._get_me,
            "logOut": lambda _params: True,
            "close": lambda _params: True,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "sendMessageDraft": self._send_message_draft,
            "sendDocument": lambda params: self._send_upload(params, "document"),
            "sendPhoto": lambda params: self._send_upload(params, "photo"),
            "sendAudio": lambda params: self._send_upload(params, "audio"),
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": lambda _params: list(self.commands),
            "deleteMyCommands": self._delete_my_commands,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
        }
        self._by_lower = {name.lower(): name for name in [*self._handlers, "getUpdates"]}
        self._http: ThreadedServer | None = None
        self._new_update: asyncio.Event | None = None
        self._stopping = False
        self._polls = 0

    # -- addresses -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._http is not None, "the server is not started"
        return self._http.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Fake Bot", "username": self.username}

    # -- scripting -------------------------------------------------------------------------------------------
    def push_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str = "private",
        message_thread_id: int | None = None,
        reply_to_bot: bool = False,
        update_id: int | None = None,
    ) -> int:
        """Queue an Update with a text message from a user (the user is the chat in private chats by default);
        returns its update_id. Commands and @mentions get their entities, as Telegram adds them."""
        user_id = user_id if user_id is not None else (chat_id if chat_type == "private" else 1000)
        user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}", "username": f"user{user_id}"}
        if chat_type == "private":
            chat: dict[str, Any] = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        else:
            chat = {"id": chat_id, "type": chat_type, "title": f"Chat {chat_id}"}
            if message_thread_id is not None and chat_type == "supergroup":
                chat["is_forum"] = True
        with self._lock:
            self._chats[chat_id] = chat
            message: dict[str, Any] = {
                "message_id": self._next_message_id(chat_id),
                "date": int(time.time()),
                "chat": chat,
                "from": user,
                "text": text,
            }
            entities = [
                {"type": match.lastgroup, "offset": utf16_len(text[: match.start()]), "length": utf16_len(match[0])}
                for match in _AUTO_ENTITIES.finditer(text)
            ]
            if entities:
                message["entities"] = entities
            if message_thread_id is not None:
                message["message_thread_id"] = message_thread_id
                message["is_topic_message"] = True
            if reply_to_bot:
                mine = [key for key in self._order if key[0] == chat_id and key not in self._deleted]
                message["reply_to_message"] = (
                    self._messages[mine[-1]]
                    if mine
                    else {"message_id": 1, "date": message["date"], "chat": chat, "from": self.bot_user, "text": "."}
                )
            update: dict[str, Any] = {"message": message}
            if update_id is not None:
                update["update_id"] = update_id
            return self.push_update(update)

    def push_callback(
        self,
        chat_id: int,
        data: str,
        *,
        user_id: int | None = None,
        message_id: int | None = None,
        with_message: bool = True,
    ) -> int:
        """Queue an Update with a callback query: a user pressed a button of the bot's message `message_id` (by
        default the newest one with buttons) in the chat, sending `data` (any data: a forged press is just as
        easy). `with_message=False`: the query carries no message, as for one too old. Returns its update_id."""
        chat = self._chats.get(chat_id, {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"})
        user_id = user_id if user_id is not None else (chat_id if chat["type"] == "private" else 1000)
        user = {"id": user_id, "is_bot": False, "first_name": f"User {user_id}", "username": f"user{user_id}"}
        with self._lock:
            self._last_callback += 1
            query: dict[str, Any] = {
                "id": f"callback-{self._last_callback}",
                "from": user,
                "chat_instance": f"instance-{chat_id}",
                "data": data,
            }
            if with_message:
                mine = [
                    key
                    for key in self._order
                    if key[0] == chat_id
                    and key not in self._deleted
                    and ((message_id is None and "reply_markup" in self._messages[key]) or key[1] == message_id)
                ]
                if not mine:
                    raise AssertionError(f"no message of the bot in chat {chat_id} to press a button of")
                query["message"] = self._public(self._messages[mine[-1]])
        return self.push_update({"callback_query": query})

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue any Update (an update_id is given when it has none); returns its update_id."""
        with self._lock:
            if "update_id" not in update:
                update = {"update_id": self._last_update_id + 1, **update}
            update_id = int(update["update_id"])
            self._last_update_id = max(self._last_update_id, update_id)
            self._updates.append((update, [False]))
            self._notify()
        self._wake_pollers()
        return update_id

    def fail(
        self,
        method: str,
        status: int,
        description: str,
        *,
        times: int = 1,
        parameters: dict[str, Any] | None = None,
        raw_body: str | None = None,
    ) -> None:
        """The next `times` calls of `method` answer this error instead of running (`raw_body`: that text as
        text/html instead of the Bot API's JSON error, as a proxy's 502 page comes)."""
        with self._lock:
            self._injected.setdefault(method.lower(), []).extend(
                ApiError(status, description, parameters, raw_body=raw_body) for _ in range(times)
            )

    def inject(self, method: str, fault: Fault, *, times: int = 1) -> None:
        """The next `times` calls of `method` meet this fault (after the faults injected before it)."""
        with self._lock:
            self._injected.setdefault(method.lower(), []).extend(fault for _ in range(times))

    def drop(self, method: str, *, times: int = 1) -> None:
        """The next `times` calls of `method` get no answer: the server closes the connection once the request
        is read (recorded as a Call with status 0)."""
        self.inject(method, Drop(), times=times)

    def stall(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` calls of `method` are answered only after `seconds` (a slow proxy or network)."""
        self.inject(method, Stall(seconds), times=times)

    def answer(self, method: str, result: Any, *, times: int = 1) -> None:
        """The next `times` calls of `method` answer `result` as it is: a getUpdates result that is no list, or
        updates the server would never make (without update_id). Ordinary malformed updates, such as a message
        without `date` or `chat`, are better served with push_update, which confirms them like Telegram."""
        self.inject(method, Answer(result), times=times)

    def flood(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls of `method` answer 429 Too Many Requests with this retry_after."""
        self.fail(
            method,
            429,
            f"Too Many Requests: retry after {retry_after}",
            times=times,
            parameters={"retry_after": retry_after},
        )

    def flood_limit(self, *, per_second: int) -> None:
        """From now on, a sendMessage arriving when `per_second` were answered within the second before it answers
        429 with retry_after 1, and counts in `flood_violations` (a bot that paces itself never meets it)."""
        with self._lock:
            self._per_second = per_second

    def block_bot(self, chat_id: int | str) -> None:
        """The user of this private chat blocked the bot: every sendMessage to it answers 403."""
        with self._lock:
            self._blocked_by.add(chat_id)

    def add_file(self, data: bytes, file_path: str = "documents/file.bin") -> str:
        """Make a file available to getFile and downloads; returns its file_id."""
        with self._lock:
            file_id = f"file-{len(self._files) + 1}"
            self._files[file_id] = (file_path, data)
            return file_id

    # -- inspection ------------------------------------------------------------------------------------------
    @property
    def calls(self) -> list[Call]:
        """Every request received, in order, answered or refused."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def sent(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Each successful sendMessage, editMessageText and sendMessageDraft, in order, as
        {"method", "chat_id", "message_id" (None for drafts), "params", "at" (time.monotonic())}."""
        with self._lock:
            return [dict(sent) for sent in self._sent if chat_id is None or sent["chat_id"] == chat_id]

    def messages(self, chat_id: int | str) -> list[dict[str, Any]]:
        """The bot's messages in a chat, not deleted, in the order sent, as they are now (after edits)."""
        with self._lock:
            keys = [key for key in self._order if key[0] == chat_id and key not in self._deleted]
            return [dict(self._messages[key]) for key in keys]

    def texts(self, chat_id: int | str) -> list[str]:
        """The visible text (HTML parsed) of each message of the bot in a chat, after edits and deletions."""
        return [message["text"] for message in self.messages(chat_id)]

    def documents(self, chat_id: int | str, kind: str = "document") -> list[dict[str, Any]]:
        """Each file of `kind` ("document", "photo", "audio": sendDocument, sendPhoto, sendAudio) the bot sent to a
        chat, in order, as {"file_name", "data" (bytes), "caption"}."""
        with self._lock:
            return [
                {key: document[key] for key in ("file_name", "data", "caption")}
                for document in self._documents
                if document["chat_id"] == chat_id and document["kind"] == kind
            ]

    def raw_texts(self, chat_id: int | str) -> list[str]:
        """The text of each message of the bot in a chat as last sent (HTML markup kept)."""
        return [message["_raw_text"] for message in self.messages(chat_id)]

    @property
    def waiting_polls(self) -> int:
        """getUpdates requests waiting for updates right now."""
        with self._lock:
            return self._polls

    @property
    def pending_updates(self) -> int:
        """Updates not yet confirmed by the bot."""
        with self._lock:
            return len(self._updates)

    def wait_until(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        """Block this thread until predicate() is true (re-checked on every change); TimeoutError otherwise.
        Not for the thread of an event loop the bot runs in: use `await wait_for(...)` there."""
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(self._timeout_message(timeout))

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait, without blocking the event loop, until predicate() is true; TimeoutError otherwise."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._async_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    waiter[1].clear()
                    if predicate():
                        return
                    await waiter[1].wait()
        except TimeoutError:
            raise TimeoutError(self._timeout_message(timeout)) from None
        finally:
            with self._lock:
                self._async_waiters.remove(waiter)

    def _timeout_message(self, timeout: float) -> str:
        recent = [(call.method, call.status, str(call.params.get("text"))[:80]) for call in self.calls[-8:]]
        return f"condition not met within {timeout} s; last calls: {recent}"

    def _notify(self) -> None:
        """Wake every waiter; called with the lock held after each change."""
        self._changed.notify_all()
        for loop, event in self._async_waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(event.set)

    # -- life cycle ------------------------------------------------------------------------------------------
    def __enter__(self) -> "FakeBotAPI":
        self._http = ThreadedServer("fake Bot API server", backlog=1024)
        self._http.start(self._app())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        self._wake_pollers()  # long polls answer [] at once
        if self._http is not None:
            self._http.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        self._new_update = asyncio.Event()
        assert self._http is not None
        self._http.ready.set()
        yield

    def _wake_pollers(self) -> None:
        if self._http is not None:
            self._http.call_soon(self._new_update_arrived)

    def _new_update_arrived(self) -> None:
        """On the server's loop: release the current long polls; later ones wait on a fresh event."""
        assert self._new_update is not None
        event, self._new_update = self._new_update, asyncio.Event()
        event.set()

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"]),
                Route("/file/bot{token}/{path:path}", self._download, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )

    # -- HTTP ------------------------------------------------------------------------------------------------
    async def _endpoint(self, request: Request) -> Response:
        arrived = time.monotonic()
        if request.path_params["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        method = self._by_lower.get(str(request.path_params["method"]).lower())
        if method is None:
            return ApiError(404, "Not Found: method not found").response()
        try:
            params = await self._params(request)
        except ValueError as exc:
            return ApiError(400, f"Bad Request: can't parse request: {exc}").response()
        try:
            with self._lock:
                injected = self._injected.get(method.lower())
                fault = injected.pop(0) if injected else None
            if isinstance(fault, ApiError):
                raise fault
            if isinstance(fault, Drop):
                assert self._http is not None
                self._http.drop(request.scope.get("client"))
                self._record(Call(method, params, 0, arrived))
                await asyncio.sleep(0)  # uvicorn sees the connection lost, so it sends nothing more
                return Response(status_code=500)
            if isinstance(fault, Answer):
                self._record(Call(method, params, 200, arrived))
                return JSONResponse({"ok": True, "result": fault.result})
            if isinstance(fault, Stall):
                await asyncio.sleep(fault.seconds)
            if method == "getUpdates":
                result = await self._get_updates(params)
            else:
                with self._lock:
                    if method == "sendMessage":
                        self._count_send(arrived)
                    result = self._handlers[method](params)
        except ApiError as error:
            self._record(Call(method, params, error.status, arrived))
            return error.response()
        self._record(Call(method, params, 200, arrived))
        return JSONResponse({"ok": True, "result": result})

    async def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = {key: _coerce(key, value) for key, value in request.query_params.items()}
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the JSON body is not an object")
            params.update(body)
        elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            async with request.form() as form:
                for key, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        data = await value.read()
                        params[key] = {"filename": value.filename, "size": len(data), "data": data}
                    else:
                        params[key] = _coerce(key, value)
        chat_id = params.get("chat_id")
        if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
            params["chat_id"] = int(chat_id)
        return params

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            self._notify()

    async def _download(self, request: Request) -> Response:
        if request.path_params["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        with self._lock:
            found = [data for path, data in self._files.values() if path == request.path_params["path"]]
        if not found:
            return ApiError(404, "Not Found").response()
        return Response(found[0], media_type="application/octet-stream")

    def _count_send(self, arrived: float) -> None:
        """flood_limit's rolling second, with the lock held: a send past the limit raises 429."""
        if self._per_second is None:
            return
        while self._recent_sends and self._recent_sends[0] <= arrived - 1.0:
            self._recent_sends.popleft()
        if len(self._recent_sends) >= self._per_second:
            self.flood_violations += 1
            raise ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        self._recent_sends.append(arrived)

    # -- getUpdates ------------------------------------------------------------------------------------------
    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with self._lock:
            if self.webhook["url"]:
                raise ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            # Telegram forgets the delivered updates below offset; an update pushed again is still undelivered.
            self._updates = [entry for entry in self._updates if not (entry[1][0] and entry[0]["update_id"] < offset)]
        while True:
            with self._lock:
                ready = [entry for entry in self._updates if entry[0]["update_id"] >= offset or not entry[1][0]]
                remaining = deadline - loop.time()
                if ready or remaining <= 0 or self._stopping:
                    # In update_id order, so that the offset PTB derives from the last one confirms all of them.
                    ready = sorted(ready, key=lambda entry: int(entry[0]["update_id"]))[:limit]
                    for entry in ready:
                        entry[1][0] = True
                    return [entry[0] for entry in ready]
                assert self._new_update is not None
                event = self._new_update
                self._polls += 1
                self._notify()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                with self._lock:
                    self._polls -= 1

    # -- methods (called with the lock held) -----------------------------------------------------------------
    def _next_message_id(self, chat_id: int | str) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _chat(self, chat_id: int | str) -> dict[str, Any]:
        if chat_id in self._chats:
            return self._chats[chat_id]
        if isinstance(chat_id, int) and chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}
        return {"id": chat_id, "type": "supergroup", "title": f"Chat {chat_id}"}

    @staticmethod
    def _required(params: dict[str, Any], name: str) -> Any:
        value = params.get(name)
        if value is None or value == "":
            raise ApiError(400, f"Bad Request: {name} is empty")
        return value

    @staticmethod
    def _content(params: dict[str, Any], *, too_long: str, allow_empty: bool = False) -> dict[str, Any]:
        """The visible text and entities of a message, checked like Telegram does."""
        raw = params.get("text")
        raw = "" if raw is None else str(raw)
        parse_mode = params.get("parse_mode")
        entities: list[dict[str, Any]] = list(params.get("entities") or [])
        if parse_mode is not None and str(parse_mode).lower() == "html":
            text, entities = parse_html(raw)
        elif parse_mode in (None, "", "Markdown", "MarkdownV2"):
            text = raw
        else:
            raise ApiError(400, f"Bad Request: unsupported parse_mode {parse_mode!r}")
        if not text.strip() and not allow_empty:
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise ApiError(400, too_long)
        content: dict[str, Any] = {"text": text, "_raw_text": raw}
        if entities:
            content["entities"] = entities
        return content

    def _record_sent(self, method: str, chat_id: int | str, message_id: int | None, params: dict[str, Any]) -> None:
        self._sent.append(
            {"method": method, "chat_id": chat_id, "message_id": message_id, "params": params, "at": time.monotonic()}
        )

    @staticmethod
    def _public(message: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in message.items() if not key.startswith("_")}

    def _get_me(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._required(params, "chat_id")
        if chat_id in self._blocked_by:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        content = self._content(params, too_long="Bad Request: message is too long")
        message_id = self._next_message_id(chat_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self.bot_user,
            **content,
        }
        if params.get("message_thread_id") is not None:
            message["message_thread_id"] = int(params["message_thread_id"])
        reply = params.get("reply_parameters")
        if isinstance(reply, dict) and (replied := self._messages.get((chat_id, int(reply["message_id"])))):
            message["reply_to_message"] = self._public(replied)
        if params.get("reply_markup") is not None:
            message["reply_markup"] = params["reply_markup"]
        self._messages[(chat_id, message_id)] = message
        self._order.append((chat_id, message_id))
        self._record_sent("sendMessage", chat_id, message_id, params)
        return self._public(message)

    def _edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("inline_message_id"):
            raise ApiError(400, "Bad Request: inline messages are not supported by the fake server")
        chat_id = self._required(params, "chat_id")
        message_id = int(self._required(params, "message_id"))
        key = (chat_id, message_id)
        message = self._messages.get(key)
        if message is None or key in self._deleted:
            raise ApiError(400, "Bad Request: message to edit not found")
        content = self._content(params, too_long="Bad Request: MESSAGE_TOO_LONG")
        markup = params.get("reply_markup")
        if (
            content["text"] == message["text"]
            and content.get("entities") == message.get("entities")
            and markup == message.get("reply_markup")
        ):
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message",
            )
        message.pop("entities", None)
        message.update(content, edit_date=int(time.time()))
        if markup is not None:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        self._record_sent("editMessageText", chat_id, message_id, params)
        return self._public(message)

    def _send_message_draft(self, params: dict[str, Any]) -> bool:
        chat_id = self._required(params, "chat_id")
        if not int(params.get("draft_id") or 0):
            raise ApiError(400, "Bad Request: draft_id must be non-zero")
        if self._chat(chat_id)["type"] != "private":
            raise ApiError(400, "Bad Request: message drafts can be sent only to private chats")
        self._content(params, too_long="Bad Request: message is too long", allow_empty=True)
        self._record_sent("sendMessageDraft", chat_id, None, params)
        return True

    def _send_upload(self, params: dict[str, Any], kind: str) -> dict[str, Any]:
        """An uploaded file (multipart) of `kind` (its parameter: document, photo, audio), kept with its name and
        caption; over Telegram's limit (10 MB for a photo, else MAX_UPLOAD_BYTES) it is refused as Telegram does.
        A file_id or URL instead of an upload is refused: the fake has no files to resend."""
        chat_id = self._required(params, "chat_id")
        upload = params.get(kind)
        if not isinstance(upload, dict):
            raise ApiError(400, f"Bad Request: the fake Bot API takes a {kind} as a multipart upload only")
        if kind == "photo" and upload["size"] > MAX_PHOTO_BYTES:
            raise ApiError(400, "Bad Request: PHOTO_SAVE_FILE_INVALID")
        if upload["size"] > MAX_UPLOAD_BYTES:
            raise ApiError(413, "Request Entity Too Large")
        caption = str(params.get("caption") or "")
        if utf16_len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError(400, "Bad Request: message caption is too long")
        message_id = self._next_message_id(chat_id)
        file_id = f"{kind}-{len(self._documents) + 1}"
        self._documents.append(
            {
                "chat_id": chat_id,
                "kind": kind,
                "file_name": upload["filename"],
                "data": upload["data"],
                "caption": caption,
            }
        )
        described = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": upload["size"]}
        sent: Any = {
            "document": {**described, "file_name": upload["filename"]},
            "photo": [{**described, "width": 1, "height": 1}],
            "audio": {**described, "duration": 0},
        }[kind]
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self.bot_user,
            kind: sent,
        }
        if caption:
            message["caption"] = caption
        return message

    def _delete_message(self, params: dict[str, Any]) -> bool:
        key = (self._required(params, "chat_id"), int(self._required(params, "message_id")))
        if key not in self._messages or key in self._deleted:
            raise ApiError(400, "Bad Request: message to delete not found")
        self._deleted.add(key)
        return True

    def _send_chat_action(self, params: dict[str, Any]) -> bool:
        self.actions.append((self._required(params, "chat_id"), str(self._required(params, "action"))))
        return True

    def _set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: commands must be an array")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = [dict(command) for command in commands]
        return True

    def _delete_my_commands(self, _params: dict[str, Any]) -> bool:
        self.commands = []
        return True

    def _set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        self.webhook = {"url": url, "secret_token": params.get("secret_token") if url else None}
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {"url": "", "secret_token": None}
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _get_webhook_info(self, _params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook["url"], "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    def _answer_callback_query(self, params: dict[str, Any]) -> bool:
        self._required(params, "callback_query_id")
        self.callback_answers.append(dict(params))
        return True

    def _get_file(self, params: dict[str, Any]) -> dict[str, Any]:
        file_id = str(self._required(params, "file_id"))
        if file_id not in self._files:
            raise ApiError(400, "Bad Request: invalid file_id")
        path, data = self._files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(data), "file_path": path}
