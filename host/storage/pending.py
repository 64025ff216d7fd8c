"""Replies owed to users, for crash recovery: the statements on pending_replies and the Orphan they yield.

A row is written with the user's message and removed once the reply is delivered; the process running the turn
holds its lease. A row whose lease lapsed (its process died) is claimed by a conditional UPDATE, so that of two
processes claiming at once exactly one gets it. Imports nothing from the host but storage.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from host.storage.models import Conversation, Message, PendingReply, utcnow

# Longer than storage.database's pool wait, so that a renewal kept waiting for a connection cannot let a live lease
# lapse; renewed every third of it (host.telegram.recovery).
LEASE = timedelta(seconds=180)


@dataclass(frozen=True, slots=True)
class Orphan:
    """A stored user message whose reply was never delivered, claimed by this process to answer it now."""

    update_id: int
    message_id: int
    conversation_id: int
    chat_id: int
    topic_id: int
    user_id: int | None
    text: str
    token_count: int
    created_at: datetime
    route: dict[str, Any]
    attempts: int  # recoveries begun, this one included
    preview: int | None  # the message id (in the conversation's chat) of the preview shown before the crash
    answer: str | None  # the answer stored before the crash but perhaps never delivered


def add(connection: Connection, update_id: int, message_id: int, route: dict[str, Any], owner: str) -> None:
    connection.execute(
        insert(PendingReply).values(
            update_id=update_id, message_id=message_id, route=route, owner=owner, lease_until=utcnow() + LEASE
        )
    )


def set_preview(connection: Connection, update_id: int, message_id: int) -> None:
    connection.execute(
        update(PendingReply).where(PendingReply.update_id == update_id).values(preview_message_id=message_id)
    )


def renew(connection: Connection, owner: str) -> int:
    result = connection.execute(
        update(PendingReply).where(PendingReply.owner == owner).values(lease_until=utcnow() + LEASE)
    )
    return int(result.rowcount or 0)


def claim(connection: Connection, owner: str, *, lapsed_only: bool) -> list[Orphan]:
    """Take over the rows of other processes (with a lapsed lease only, or all of them); oldest first."""
    now = utcnow()
    found = (
        select(
            PendingReply.update_id,
            PendingReply.owner,
            PendingReply.route,
            PendingReply.attempts,
            PendingReply.preview_message_id,
            Message.id.label("message_id"),
            Message.user_id,
            Message.content,
            Message.token_count,
            Message.created_at,
            Conversation.id.label("conversation_id"),
            Conversation.chat_id,
            Conversation.topic_id,
        )
        .join(Message, Message.id == PendingReply.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(PendingReply.owner != owner)
        .order_by(PendingReply.message_id)
    )
    lapsed = PendingReply.lease_until < now
    if lapsed_only:
        found = found.where(lapsed)
    claimed = []
    for row in connection.execute(found).all():
        take = update(PendingReply).where(PendingReply.update_id == row.update_id, PendingReply.owner == row.owner)
        if lapsed_only:  # checked again: its owner may have renewed the lease since the SELECT (PostgreSQL)
            take = take.where(lapsed)
        taken = connection.execute(
            take.values(owner=owner, lease_until=now + LEASE, attempts=PendingReply.attempts + 1)
        )
        if taken.rowcount != 1:  # another process claimed it, or its owner renewed it, a moment ago
            continue
        claimed.append(
            Orphan(
                update_id=row.update_id,
                message_id=row.message_id,
                conversation_id=row.conversation_id,
                chat_id=row.chat_id,
                topic_id=row.topic_id,
                user_id=row.user_id,
                text=row.content or "",
                token_count=row.token_count,
                created_at=row.created_at,
                route=dict(row.route),
                attempts=row.attempts + 1,
                preview=row.preview_message_id,
                answer=_stored_answer(connection, row.conversation_id, row.message_id),
            )
        )
    return claimed


def _stored_answer(connection: Connection, conversation_id: int, message_id: int) -> str | None:
    """The turn's final answer when it was stored: the first assistant text after the message, before the next
    user message (a turn's tool-call requests carry tool_calls and do not count)."""
    later = connection.execute(
        select(Message.role, Message.content, Message.tool_calls)
        .where(Message.conversation_id == conversation_id, Message.id > message_id, Message.role != "tool")
        .order_by(Message.id)
        .limit(50)
    ).all()
    for role, content, tool_calls in later:
        if role == "user":
            return None
        if role == "assistant" and not tool_calls:
            return str(content or "")
    return None
