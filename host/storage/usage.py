"""What turns cost, per user and day (UTC): the rows the budgets are checked against and /stats and /usage read.
Imports only storage."""

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from host.storage import retention
from host.storage.models import BlockedUser, UsageDay, User
from host.storage.transactions import Transactions


@dataclass(frozen=True, slots=True)
class Spent:
    """One turn's cost, or a sum of them."""

    tokens: int = 0
    turns: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class DayTotals:
    """Everyone's usage on one day, with the counts /stats shows beside it."""

    spent: Spent
    active_users: int  # users with a turn that day
    users: int  # users ever seen (and not forgotten)
    blocked: int


def add(connection: Connection, user_id: int, day: str, spent: Spent) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    values = {
        "tokens": spent.tokens,
        "turns": spent.turns,
        "llm_calls": spent.llm_calls,
        "tool_calls": spent.tool_calls,
        "seconds": spent.seconds,
    }
    statement = dialect.insert(UsageDay).values(user_id=user_id, day=day, **values)
    column = statement.excluded
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id", "day"],
            set_={name: getattr(UsageDay, name) + getattr(column, name) for name in values},
        )
    )


def _spent(row: Row[int, int, int, int, float]) -> Spent:
    return Spent(
        tokens=int(row[0] or 0),
        turns=int(row[1] or 0),
        llm_calls=int(row[2] or 0),
        tool_calls=int(row[3] or 0),
        seconds=float(row[4] or 0),
    )


_SUMS = (
    func.sum(UsageDay.tokens),
    func.sum(UsageDay.turns),
    func.sum(UsageDay.llm_calls),
    func.sum(UsageDay.tool_calls),
    func.sum(UsageDay.seconds),
)


class UsageLedger:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def add(self, user_id: int, day: str, spent: Spent) -> None:
        """Add one turn's cost to the user's day (an upsert, atomic on both backends)."""
        await self._transactions.write("record the usage", lambda connection: add(connection, user_id, day, spent))

    async def forget_before(self, day: str) -> int:
        """Delete the rows of days before `day` (RETENTION_DAYS); how many."""
        return await self._transactions.write(
            "forget old usage", lambda connection: retention.delete_usage_before(connection, day)
        )

    async def of_user(self, user_id: int, day: str) -> Spent:
        query = select(*_SUMS).where((UsageDay.user_id == user_id) & (UsageDay.day == day))
        return await self._transactions.read(
            "read the usage", lambda connection: _spent(connection.execute(query).one())
        )

    async def tokens_of_day(self, day: str) -> int:
        """Everyone's tokens on `day`, for the global budget (one indexed sum)."""
        query = select(func.coalesce(func.sum(UsageDay.tokens), 0)).where(UsageDay.day == day)
        return await self._transactions.read("read the usage", lambda connection: int(connection.scalar(query) or 0))

    async def day(self, day: str) -> DayTotals:
        def work(connection: Connection) -> DayTotals:
            today = UsageDay.day == day
            spent = _spent(connection.execute(select(*_SUMS).where(today)).one())
            people = (UsageDay.turns > 0) & (UsageDay.user_id != 0)  # user 0: the operator at a terminal
            active = connection.scalar(select(func.count()).select_from(UsageDay).where(today, people))
            users = connection.scalar(select(func.count()).select_from(User))
            blocked = connection.scalar(select(func.count()).select_from(BlockedUser))
            return DayTotals(spent, int(active or 0), int(users or 0), int(blocked or 0))

        return await self._transactions.read("read the statistics", work)
