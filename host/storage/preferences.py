"""Each chat's (and forum topic's) own settings: the statements on chat_settings and the value they yield.

What a value may be (which models, what range) is the service's to decide; this module only stores it. Imports
nothing from the host but storage.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from host.storage.models import ChatSettings, utcnow


@dataclass(frozen=True, slots=True)
class ChatPreferences:
    """A chat's choices; None is the operator's default."""

    model: str | None = None
    temperature: float | None = None
    system_prompt: str | None = None
    servers_off: tuple[str, ...] = ()  # MCP servers whose tools this chat's model is not offered


NONE = ChatPreferences()
# the names `write` takes: a name left out stays as it is, None clears it
FIELDS = ("model", "temperature", "system_prompt", "servers_off")


def read(connection: Connection, chat_id: int, topic_id: int) -> ChatPreferences:
    row = connection.execute(
        select(
            ChatSettings.model, ChatSettings.temperature, ChatSettings.system_prompt, ChatSettings.servers_off
        ).where((ChatSettings.chat_id == chat_id) & (ChatSettings.topic_id == topic_id))
    ).first()
    if row is None:
        return NONE
    return ChatPreferences(
        model=row.model,
        temperature=row.temperature,
        system_prompt=row.system_prompt,
        servers_off=tuple(row.servers_off or ()),
    )


def write(connection: Connection, chat_id: int, topic_id: int, changes: dict[str, Any]) -> ChatPreferences:
    """Set the named columns (an upsert, atomic on both backends); the chat's preferences after it."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a chat setting: {sorted(unknown)}")
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    now = utcnow()
    statement = dialect.insert(ChatSettings).values(chat_id=chat_id, topic_id=topic_id, updated_at=now, **changes)
    connection.execute(
        statement.on_conflict_do_update(index_elements=["chat_id", "topic_id"], set_={**changes, "updated_at": now})
    )
    return read(connection, chat_id, topic_id)


def clear(connection: Connection, chat_id: int, topic_id: int) -> None:
    connection.execute(
        delete(ChatSettings).where((ChatSettings.chat_id == chat_id) & (ChatSettings.topic_id == topic_id))
    )
