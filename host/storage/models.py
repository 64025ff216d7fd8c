"""The tables, as SQLAlchemy 2 declarative models; migrations/versions must match them (a test compares).

Message.content and Message.tool_calls are sealed at rest (host.storage.sealing). Imports nothing from the host but
storage (and, through sealing, errors).
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from host.storage.sealing import SealedJSON, SealedText

# SQLite only auto-numbers an INTEGER PRIMARY KEY (the rowid); PostgreSQL gets a 64-bit sequence.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both backends (SQLite stores it as naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s"})


class User(Base):
    """A Telegram user the bot has seen; the id is Telegram's."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    # when Telegram said the user blocked the bot (a broadcast skips them); cleared when they write again
    unreachable_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Conversation(Base):
    """One history of a chat (or forum topic); a reset closes it (reset_at) and opens the next."""

    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_chat_topic_id", "chat_id", "topic_id", "id"),
        # at most one open conversation per chat and topic: makes "create if none" atomic
        Index(
            "uq_conversations_open",
            "chat_id",
            "topic_id",
            unique=True,
            sqlite_where=text("reset_at IS NULL"),
            postgresql_where=text("reset_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    topic_id: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Message(Base):
    """One chat message in OpenAI form; `id` orders a conversation (strictly increasing)."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        Index("ix_messages_user_id_id", "user_id", "id"),  # a user's messages in groups: /export, /forget
        CheckConstraint("role IN ('system', 'user', 'assistant', 'tool')", name="ck_messages_role"),
        {"sqlite_autoincrement": True},  # never reuse an id, even the newest one's after a delete
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str | None] = mapped_column(SealedText, nullable=True)  # sealed: user text, answers, results
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(SealedJSON, nullable=True)  # sealed arguments
    tool_call_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    token_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProcessedUpdate(Base):
    """A Telegram update id already claimed, so that an update is answered once across a restart."""

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingReply(Base):
    """A stored user message whose reply is not delivered yet: written with the message, removed on delivery.

    The process running the turn (`owner`) holds a lease it renews; a row left with a lapsed lease belongs to a
    turn whose process died, and is claimed (owner and lease taken over, attempts counted) to be answered then."""

    __tablename__ = "pending_replies"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    message_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("messages.id", ondelete="CASCADE"))
    route: Mapped[dict[str, Any]] = mapped_column(JSON)  # the front end's own data: where the reply goes
    owner: Mapped[str] = mapped_column(String(32))
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    preview_message_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class BlockedUser(Base):
    """A user an admin blocked: nothing they send is stored or answered (host.storage.access)."""

    __tablename__ = "blocked_users"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    blocked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    blocked_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # None: the operator at a terminal


class RefusalNotice(Base):
    """The one notice a refused user (blocked, or not allowed) gets on a day (UTC): the row is its claim."""

    __tablename__ = "refusal_notices"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD


class ChatSettings(Base):
    """A chat's (and forum topic's) own choices; a column left NULL means the operator's default."""

    __tablename__ = "chat_settings"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    topic_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)
    temperature: Mapped[float | None] = mapped_column(Float, nullable=True)
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    servers_off: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # servers /mcp turned off here
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UsageDay(Base):
    """What one user's turns cost on one day (UTC): tokens (the server's count, else our estimate), model and tool
    calls, and the time the turns took. User 0 is the operator at a terminal."""

    __tablename__ = "usage_days"
    __table_args__ = (Index("ix_usage_days_day", "day"),)

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    turns: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    llm_calls: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    tool_calls: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    seconds: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))


class AuditEntry(Base):
    """One thing done with authority (host.storage.audit): who (None: the operator or the admin API), what, to
    whom, and details that never hold message content."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Broadcast(Base):
    """An admin's message to every known user, sent at a pace Telegram allows; the process sending it holds a
    lease, so another takes it over after a crash. `text` is sealed like message content."""

    __tablename__ = "broadcasts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    text: Mapped[str] = mapped_column(SealedText)
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BroadcastRecipient(Base):
    """One user of a broadcast and what became of it: pending, sent, failed, or skipped (they blocked the bot, or an
    admin blocked them)."""

    __tablename__ = "broadcast_recipients"
    __table_args__ = (
        Index("ix_broadcast_recipients_state", "broadcast_id", "state", "user_id"),
        CheckConstraint("state IN ('pending', 'sent', 'failed', 'skipped')", name="ck_broadcast_recipients_state"),
    )

    broadcast_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("broadcasts.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(String(8), default="pending")
