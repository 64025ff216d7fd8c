"""What a user may take away (/export): every conversation of their private chat, /reset ones included, with all
its messages, and their own messages in groups (never anyone else's there). Read newest first in pages of PAGE
rows, so that memory stays bounded by the byte cap: past it the older messages are left out, and the result says
so. Imports nothing from the host but storage.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Select, select, true, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from host.storage.models import Conversation, Message
from host.storage.transactions import Transactions

PAGE = 500
MESSAGE_OVERHEAD = 64  # bytes counted per message besides its content: role, time, the file's own markup


@dataclass(frozen=True, slots=True)
class ExportedMessage:
    role: str
    content: str | None
    tool_calls: list[dict[str, Any]] | None  # as stored: the model-facing tool name and its arguments
    tool_call_id: str | None
    at: datetime


@dataclass(slots=True)
class ExportedConversation:
    """One conversation, with the messages taken away: all of a private chat's, only the user's own in a group."""

    id: int
    chat_id: int
    topic_id: int
    private: bool
    created_at: datetime
    reset_at: datetime | None
    messages: list[ExportedMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Exported:
    """The conversations oldest first, each with its messages oldest first; `cut` when older ones were left out."""

    conversations: list[ExportedConversation]
    cut: bool

    @property
    def messages(self) -> int:
        return sum(len(conversation.messages) for conversation in self.conversations)


class Exports:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def of_user(self, user_id: int | None, private_chat: int, max_bytes: int, page: int = PAGE) -> Exported:
        """The user's private chat (`private_chat`: their id in Telegram, the terminal's chat for the operator) and,
        for a user, their messages in groups: the newest within `max_bytes` of content (see `size`)."""
        by_id: dict[int, ExportedConversation] = {}
        used, before, cut = 0, None, False
        private = await self._transactions.read(
            "read the export",
            lambda connection: list(
                connection.scalars(select(Conversation.id).where(Conversation.chat_id == private_chat))
            ),
        )
        while not cut:
            query = _page(user_id, private_chat, private, before, page)
            rows = await self._transactions.read("read the export", partial(_rows, query=query))
            for row in rows:
                message = ExportedMessage(row.role, row.content, row.tool_calls, row.tool_call_id, row.created_at)
                used += size(message)
                if used > max_bytes:
                    cut = True
                    break
                conversation = by_id.get(row.conversation_id)
                if conversation is None:
                    conversation = by_id[row.conversation_id] = ExportedConversation(
                        row.conversation_id,
                        row.chat_id,
                        row.topic_id,
                        row.chat_id == private_chat,
                        row.conversation_created_at,
                        row.reset_at,
                    )
                conversation.messages.append(message)
            if len(rows) < page:
                break
            before = rows[-1].id
        conversations = sorted(by_id.values(), key=lambda conversation: conversation.id)
        for conversation in conversations:
            conversation.messages.reverse()
        return Exported(conversations, cut)


def size(message: ExportedMessage) -> int:
    """What a message counts against the cap: its text as JSON escapes it (a control character takes 6 bytes) and
    each of its lines as Markdown quotes it, its tool calls as JSON, and a fixed overhead; so that neither file
    grows past the cap by much, whatever the text."""
    calls = len(json.dumps(message.tool_calls, ensure_ascii=False).encode()) if message.tool_calls else 0
    content = message.content or ""
    return len(json.dumps(content, ensure_ascii=False).encode()) + 2 * content.count("\n") + calls + MESSAGE_OVERHEAD


def _page(
    user_id: int | None, private_chat: int, private: list[int], before: int | None, page: int
) -> Select[*tuple[Any, ...]]:
    """The next `page` messages, newest first, of the private chat's conversations (`private`, their ids) and (for a
    user) their own in other chats: each part read newest first by its own index, (conversation_id, id) and
    (user_id, id), never other chats' rows (the ids are given as values, so that the planner knows how few)."""
    columns = (
        Message.id,
        Message.conversation_id,
        Message.role,
        Message.content,
        Message.tool_calls,
        Message.tool_call_id,
        Message.created_at,
        Conversation.chat_id,
        Conversation.topic_id,
        Conversation.created_at.label("conversation_created_at"),
        Conversation.reset_at,
    )
    older = Message.id < before if before is not None else true()
    parts = [_part(columns, Message.conversation_id.in_(private) & older, page)]
    if user_id is not None:
        parts.append(
            _part(columns, (Message.user_id == user_id) & (Conversation.chat_id != private_chat) & older, page)
        )
    both = union_all(*parts).subquery()
    return select(*both.c).order_by(both.c.id.desc()).limit(page)


def _part(columns: tuple[Any, ...], where: ColumnElement[bool], page: int) -> Select[*tuple[Any, ...]]:
    joined = select(*columns).join(Conversation, Conversation.id == Message.conversation_id).where(where)
    part = joined.order_by(Message.id.desc()).limit(page).subquery()  # SQLite: no LIMIT on a bare UNION member
    return select(*part.c)


def _rows(connection: Connection, *, query: Select[*tuple[Any, ...]]) -> list[Any]:
    return list(connection.execute(query))
