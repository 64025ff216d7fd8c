"""RETENTION_DAYS's deletions, as functions on a connection inside the store's transactions (ConversationStore.
forget_messages calls them). Imports only storage's models."""

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from host.storage.models import Conversation, Message


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
