"""Conversation storage: SQLAlchemy models, the async engine, Alembic migrations and the ConversationStore.

SQLite by default, PostgreSQL by URL. Never imports host.engine, host.mcp or host.telegram.
"""

from host.storage.repository import ConversationStore
from host.storage.sealing import Sealer
from host.storage.window import StoredMessage

__all__ = ["ConversationStore", "Sealer", "StoredMessage"]
