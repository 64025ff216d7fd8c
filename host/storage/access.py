"""The blocklist and the refusal notices, as functions on a connection inside the store's transactions
(ConversationStore calls them). Imports only storage's models."""

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from host.storage.models import BlockedUser, RefusalNotice, utcnow


def block(connection: Connection, user_id: int, by: int | None) -> bool:
    """Put the user on the blocklist; False when they were on it already."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(BlockedUser).values(user_id=user_id, blocked_at=utcnow(), blocked_by=by)
    added = connection.execute(
        statement.on_conflict_do_nothing(index_elements=["user_id"]).returning(BlockedUser.user_id)
    )
    return added.first() is not None


def unblock(connection: Connection, user_id: int) -> bool:
    """Take the user off the blocklist; False when they were not on it."""
    return bool(connection.execute(delete(BlockedUser).where(BlockedUser.user_id == user_id)).rowcount)


def is_blocked(connection: Connection, user_id: int) -> bool:
    return connection.scalar(select(BlockedUser.user_id).where(BlockedUser.user_id == user_id)) is not None


def claim_notice(connection: Connection, user_id: int, day: str) -> bool:
    """True for the first refusal of the user on `day` (YYYY-MM-DD, UTC), across replicas and restarts."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(RefusalNotice).values(user_id=user_id, day=day)
    claimed = connection.execute(
        statement.on_conflict_do_nothing(index_elements=["user_id", "day"]).returning(RefusalNotice.user_id)
    )
    return claimed.first() is not None


def forget_notices(connection: Connection, before_day: str) -> int:
    """Forget the notices of days before `before_day`; how many."""
    return int(connection.execute(delete(RefusalNotice).where(RefusalNotice.day < before_day)).rowcount or 0)
