"""What the store deletes on purpose, as functions on a connection inside its transactions: RETENTION_DAYS's old
messages and usage, and everything of one user for /forget. Imports only storage's models."""

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from host.storage.models import (
    AuditEntry,
    BroadcastRecipient,
    ChatSettings,
    Conversation,
    Message,
    RefusalNotice,
    UsageDay,
    User,
)


def delete_messages_before(connection: Connection, before: datetime, batch: int) -> int:
    """The oldest `batch` messages stored before `before`; how many (fewer than `batch`: none are left)."""
    oldest = select(Message.id).where(Message.created_at < before).order_by(Message.id).limit(batch)
    ids = list(connection.scalars(oldest))
    if ids:
        connection.execute(delete(Message).where(Message.id.in_(ids)))
    return len(ids)


def delete_empty_reset(connection: Connection, before: datetime) -> None:
    """Conversations ended by /reset before `before` whose messages are all gone."""
    has_messages = select(Message.id).where(Message.conversation_id == Conversation.id).exists()
    connection.execute(
        delete(Conversation).where(Conversation.reset_at.is_not(None), Conversation.reset_at < before, ~has_messages)
    )


OWN_ACTIONS = ("tool_call", "export")  # audit entries of what a user did for themselves; /forget deletes them


def delete_user(connection: Connection, user_id: int) -> int:
    """Everything kept of a user: their private chat (every conversation, the bot's answers and the replies owed
    with it), their messages in groups, their private chat's settings, their user row, refusal notices, usage,
    broadcast deliveries and the audit entries of what they did (tool calls, exports). The blocklist and the audit
    entries of admins' actions on them stay (an admin's decision). How many messages were deleted."""
    private = select(Conversation.id).where(Conversation.chat_id == user_id)
    deleted = connection.execute(
        delete(Message).where(Message.conversation_id.in_(private) | (Message.user_id == user_id))
    ).rowcount
    connection.execute(delete(Conversation).where(Conversation.chat_id == user_id))
    connection.execute(delete(ChatSettings).where(ChatSettings.chat_id == user_id))
    connection.execute(delete(User).where(User.id == user_id))
    connection.execute(delete(RefusalNotice).where(RefusalNotice.user_id == user_id))
    connection.execute(delete(UsageDay).where(UsageDay.user_id == user_id))
    connection.execute(delete(BroadcastRecipient).where(BroadcastRecipient.user_id == user_id))
    connection.execute(delete(AuditEntry).where(AuditEntry.actor == user_id, AuditEntry.action.in_(OWN_ACTIONS)))
    return int(deleted or 0)


def delete_usage_before(connection: Connection, before_day: str) -> int:
    """Usage rows of days before `before_day` (YYYY-MM-DD); how many."""
    return int(connection.execute(delete(UsageDay).where(UsageDay.day < before_day)).rowcount or 0)
