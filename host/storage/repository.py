"""ConversationStore: conversations per chat and topic, their messages, users, claimed Telegram updates, the
replies still owed (host.storage.pending), the blocklist with its refusal notices (host.storage.access), and each
chat's own settings (host.storage.preferences).

Owns the translation of SQLAlchemy and driver errors into StorageError. Message content is sealed with the store's
Sealer (host.storage.sealing) by the columns themselves; nothing here sees a sealed value. Imports nothing from the
host but errors and storage; token counts arrive with the messages. Text is stored with NUL replaced by U+FFFD
(PostgreSQL's text cannot hold NUL; both backends keep the same history).
"""

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Self, TypeVar

from sqlalchemy import Select, delete, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from host.errors import StorageError
from host.storage import access, pending, retention
from host.storage import preferences as chat_settings
from host.storage.audit import AuditLog
from host.storage.broadcasts import Broadcasts
from host.storage.database import DEFAULT_URL, SQLiteWriter, migrate, open_engine, open_sqlite_writer
from host.storage.export import Exports
from host.storage.models import Conversation, Message, PendingReply, ProcessedUpdate, User, utcnow
from host.storage.sealing import Sealer, attach
from host.storage.transactions import Transactions, translated
from host.storage.usage import UsageLedger
from host.storage.window import StoredMessage, fit_window

_RESET_ATTEMPTS = 3
PURGE_BATCH = 5_000
T = TypeVar("T")


def window_query(conversation_id: int, max_messages: int) -> Select[*tuple[Any, ...]]:
    """The one query behind a window: the newest rows by the (conversation_id, id) index, newest first."""
    return (
        select(
            Message.id,
            Message.role,
            Message.content,
            Message.tool_calls,
            Message.tool_call_id,
            Message.token_count,
            Message.created_at,
        )
        .where(Message.conversation_id == conversation_id)
        .order_by(Message.id.desc())
        .limit(max_messages)
    )


class ConversationStore:
    """Chat history on SQLite or PostgreSQL. Open with `async with ConversationStore.open(url) as store:`."""

    def __init__(self, engine: AsyncEngine, writer: SQLiteWriter | None = None, sealer: Sealer | None = None) -> None:
        self._engine = engine
        self.sealer = sealer or Sealer()  # no key: content is written in clear
        attach(engine.dialect, self.sealer)
        if writer is not None:
            attach(writer.dialect, self.sealer)
        self.transactions = Transactions(engine, writer)
        self._write = self.transactions.write
        self.audit = AuditLog(self.transactions)
        self.usage = UsageLedger(self.transactions)
        self.exports = Exports(self.transactions)
        self.broadcasts = Broadcasts(self.transactions)
        self.owner = secrets.token_hex(8)  # this process, as the holder of its turns' pending replies

    @property
    def engine(self) -> AsyncEngine:
        """The underlying engine, for diagnostics (EXPLAIN) and benchmarks; the store owns and disposes it."""
        return self._engine

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str = DEFAULT_URL, sealer: Sealer | None = None) -> AsyncIterator[Self]:
        """Connect, migrate to the newest schema, yield the store; the engine is disposed on exit. With a `sealer`
        holding a key, message content is written sealed; without one, in clear."""
        with translated("open the database"):
            engine = open_engine(url)
            writer = open_sqlite_writer(url)
        try:
            with translated("migrate the database"):
                await migrate(engine)
            yield cls(engine, writer, sealer)
        finally:
            await engine.dispose()
            if writer is not None:
                writer.close()

    async def current_conversation(self, chat_id: int, topic_id: int = 0) -> int:
        """The open conversation of the chat (and forum topic), created if there is none."""
        return await self._write("load the conversation", lambda connection: _current(connection, chat_id, topic_id))

    async def begin_turn(
        self,
        chat_id: int,
        topic_id: int,
        message: StoredMessage,
        user_id: int | None,
        *,
        update_id: int | None = None,
        route: dict[str, Any] | None = None,
    ) -> int | None:
        """The start of a turn in one transaction: the update claimed (when given), the chat's open conversation
        (created if needed), the user recorded, the user's message stored, and with a `route` (the front end's
        data for delivering the reply; needs update_id) the reply recorded as owed until `reply_delivered`.
        Returns the conversation's id, or None when the update was claimed before (then nothing is stored)."""
        if route is not None and update_id is None:
            raise ValueError("a reply owed is recorded by its update_id: pass one with the route")

        def work(connection: Connection) -> int | None:
            if update_id is not None and not _claim(connection, update_id):
                return None
            conversation_id = _current(connection, chat_id, topic_id)
            if user_id is not None:
                _touch_user(connection, user_id)
            stored = connection.execute(_message_insert(conversation_id, message, user_id))
            if route is not None and update_id is not None:
                pending.add(connection, update_id, int(stored.scalar_one()), route, self.owner)
            return conversation_id

        return await self._write("store the message", work)

    async def preview_shown(self, update_id: int, message_id: int) -> None:
        """Remember the message (in the turn's chat) that previews the reply owed for `update_id`, to mark it cut
        off after a crash."""
        await self._write(
            "remember the preview", lambda connection: pending.set_preview(connection, update_id, message_id)
        )

    async def reply_delivered(self, update_id: int) -> None:
        """The reply owed for `update_id` reached the user (or the user was told why not): nothing is owed."""
        await self._write(
            "record the delivery",
            lambda connection: connection.execute(delete(PendingReply).where(PendingReply.update_id == update_id)),
        )

    async def renew_leases(self) -> int:
        """Extend this process's hold on the replies it owes (see pending.LEASE); how many."""
        return await self._write("renew the leases", lambda connection: pending.renew(connection, self.owner))

    async def claim_orphans(self, *, lapsed_only: bool = True) -> list[pending.Orphan]:
        """Take over the replies other processes owe and can no longer deliver: those whose lease lapsed (the
        process died), or with lapsed_only=False all of them (this process is the only one, as with polling)."""
        return await self._write(
            "claim the unanswered messages",
            lambda connection: pending.claim(connection, self.owner, lapsed_only=lapsed_only),
        )

    async def preferences(self, chat_id: int, topic_id: int = 0) -> chat_settings.ChatPreferences:
        """The chat's own settings (host.storage.preferences); all None when it chose nothing."""
        return await self.transactions.read(
            "read the chat's settings", lambda connection: chat_settings.read(connection, chat_id, topic_id)
        )

    async def set_preferences(self, chat_id: int, topic_id: int, **changes: Any) -> chat_settings.ChatPreferences:
        """Set some of the chat's settings (model=, temperature=, system_prompt=; None clears one); all of them
        after the change."""
        return await self._write(
            "store the chat's settings", lambda connection: chat_settings.write(connection, chat_id, topic_id, changes)
        )

    async def reset_preferences(self, chat_id: int, topic_id: int = 0) -> None:
        """The chat's settings back to the operator's defaults."""
        await self._write(
            "reset the chat's settings", lambda connection: chat_settings.clear(connection, chat_id, topic_id)
        )

    async def reset(self, chat_id: int, topic_id: int = 0) -> int:
        """Close the open conversation and start a new one; returns the new one's id."""

        def work(connection: Connection) -> int:
            now = utcnow()
            connection.execute(update(Conversation).where(_is_open(chat_id, topic_id)).values(reset_at=now))
            created = connection.execute(
                insert(Conversation)
                .values(chat_id=chat_id, topic_id=topic_id, created_at=now)
                .returning(Conversation.id)
            )
            return int(created.scalar_one())

        for attempt in range(1, _RESET_ATTEMPTS + 1):
            try:
                return await self._write("reset the conversation", work)
            except StorageError as exc:  # a concurrent reset of the same chat opened one first: go again
                if attempt == _RESET_ATTEMPTS or not isinstance(exc.__cause__, IntegrityError):
                    raise
        raise AssertionError("unreachable")

    async def append(self, conversation_id: int, message: StoredMessage, user_id: int | None = None) -> int:
        """Store one message now, after every earlier one of the conversation; returns its id."""
        return await self._write(
            "store the message",
            lambda connection: int(connection.execute(_message_insert(conversation_id, message, user_id)).scalar_one()),
        )

    async def window(self, conversation_id: int, *, max_messages: int, max_tokens: int) -> list[StoredMessage]:
        """The newest messages, oldest first, within both limits; tool calls stay with all their results.

        One indexed query reads at most max_messages rows, so a window costs the same for any history length.
        """
        if max_messages <= 0 or max_tokens <= 0:
            return []
        with translated("read the conversation"):
            async with self._engine.connect() as connection:
                rows = (await connection.execute(window_query(conversation_id, max_messages))).all()
        return fit_window([_stored(row) for row in rows], max_tokens)

    async def unreadable_content(self) -> str | None:
        """Why the newest stored message cannot be read with this store's keys (a SECRET_KEY that is not the one
        it was written with), or None; for a check at start. One read by the primary key."""
        try:
            with translated("read the newest message"):
                async with self._engine.connect() as connection:
                    newest = select(Message.content, Message.tool_calls).order_by(Message.id.desc()).limit(1)
                    (await connection.execute(newest)).first()  # opening its values is the check
        except StorageError as error:
            return str(error)
        return None

    async def claim_update(self, update_id: int) -> bool:
        """True the first time an update id is claimed, False ever after (atomic, and across restarts)."""
        return await self._write("claim the update", lambda connection: _claim(connection, update_id))

    async def forget_updates(self, before: datetime) -> int:
        """Forget the update ids claimed before `before` (they can be claimed again); how many were forgotten."""
        return await self._write(
            "forget old updates",
            lambda connection: int(
                connection.execute(delete(ProcessedUpdate).where(ProcessedUpdate.created_at < before)).rowcount or 0
            ),
        )

    # -- access -----------------------------------------------------------------------------------------------
    async def block_user(self, user_id: int, by: int | None) -> bool:
        """Block the user; False when they were blocked already."""
        return await self._write("block the user", lambda connection: access.block(connection, user_id, by))

    async def unblock_user(self, user_id: int) -> bool:
        """Unblock the user; False when they were not blocked."""
        return await self._write("unblock the user", lambda connection: access.unblock(connection, user_id))

    async def is_blocked(self, user_id: int) -> bool:
        return await self.transactions.read(
            "read the blocklist", lambda connection: access.is_blocked(connection, user_id)
        )

    async def claim_refusal_notice(self, user_id: int, day: str) -> bool:
        """True the first time a refused user is told so on `day` (YYYY-MM-DD, UTC)."""
        return await self._write(
            "remember the notice", lambda connection: access.claim_notice(connection, user_id, day)
        )

    async def forget_refusal_notices(self, before_day: str) -> int:
        return await self._write("forget old notices", lambda connection: access.forget_notices(connection, before_day))

    async def forget_messages(self, before: datetime, batch: int = PURGE_BATCH) -> int:
        """Delete the messages stored before `before` (and the replies owed for them), `batch` rows per transaction
        so that a long backlog never holds the database for long, then the reset conversations left empty; how
        many messages were deleted."""
        deleted = 0
        while True:
            count = await self._write(
                "forget old messages", lambda connection: retention.delete_messages_before(connection, before, batch)
            )
            deleted += count
            if count < batch:
                break
        await self._write(
            "forget old conversations", lambda connection: retention.delete_empty_reset(connection, before)
        )
        return deleted

    async def forget_user(self, user_id: int) -> int:
        """Delete everything kept of the user (see retention.delete_user) in one transaction; how many messages."""
        return await self._write("forget the user", lambda connection: retention.delete_user(connection, user_id))

    async def healthy(self) -> bool:
        """Whether the database answers a trivial query (shielded like every other call, see translated)."""
        try:
            with translated("check the database"):
                async with self._engine.connect() as connection:
                    return bool(await connection.scalar(text("SELECT 1")) == 1)
        except StorageError:
            return False


def _current(connection: Connection, chat_id: int, topic_id: int) -> int:
    """The open conversation's id, created if there is none (a concurrent creation wins the unique index)."""
    found = connection.scalar(_open_conversation(chat_id, topic_id))
    if found is not None:
        return int(found)
    statement = _insert(connection, Conversation).values(chat_id=chat_id, topic_id=topic_id, created_at=utcnow())
    connection.execute(
        statement.on_conflict_do_nothing(
            index_elements=["chat_id", "topic_id"], index_where=Conversation.reset_at.is_(None)
        )
    )
    return int(connection.execute(_open_conversation(chat_id, topic_id)).scalar_one())


def _claim(connection: Connection, update_id: int) -> bool:
    statement = _insert(connection, ProcessedUpdate).values(update_id=update_id, created_at=utcnow())
    claimed = connection.execute(
        statement.on_conflict_do_nothing(index_elements=["update_id"]).returning(ProcessedUpdate.update_id)
    )
    return claimed.first() is not None


def _touch_user(connection: Connection, user_id: int) -> None:
    """Record the user with the time first seen; a known user is only marked reachable again (they wrote)."""
    statement = _insert(connection, User).values(id=user_id, first_seen=utcnow(), preferences={})
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["id"], set_={"unreachable_since": None}, where=User.unreachable_since.is_not(None)
        )
    )


def _message_insert(conversation_id: int, message: StoredMessage, user_id: int | None) -> Any:
    return (
        insert(Message)
        .values(
            conversation_id=conversation_id,
            role=message.role,
            content=_without_nul(message.content),
            tool_calls=_without_nul_inside(message.tool_calls),
            tool_call_id=_without_nul(message.tool_call_id),
            user_id=user_id,
            token_count=message.token_count,
            created_at=utcnow(),
        )
        .returning(Message.id)
    )


def _without_nul(text: str | None) -> str | None:
    return text.replace("\x00", "\ufffd") if text is not None and "\x00" in text else text


def _without_nul_inside(value: Any) -> Any:
    """The strings of a JSON value without NUL, like the text columns (a call id must match its result's)."""
    if isinstance(value, str):
        return _without_nul(value)
    if isinstance(value, list):
        return [_without_nul_inside(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul_inside(key): _without_nul_inside(item) for key, item in value.items()}
    return value


def _is_open(chat_id: int, topic_id: int) -> ColumnElement[bool]:
    return (Conversation.chat_id == chat_id) & (Conversation.topic_id == topic_id) & (Conversation.reset_at.is_(None))


def _open_conversation(chat_id: int, topic_id: int) -> Select[int]:
    return select(Conversation.id).where(_is_open(chat_id, topic_id))


def _insert(connection: Connection, model: type[Any]) -> Any:
    """The dialect's INSERT, which has on_conflict_do_nothing / on_conflict_do_update on both backends."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


def _stored(row: Row[Any]) -> StoredMessage:
    return StoredMessage(
        role=row.role,
        content=row.content,
        tool_calls=row.tool_calls,
        tool_call_id=row.tool_call_id,
        token_count=row.token_count,
        id=row.id,
        created_at=row.created_at,
    )
