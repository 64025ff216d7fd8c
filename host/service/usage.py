"""What turns cost and who may spend more: each turn's tokens (the model server's count, else our estimate), model
calls and tool calls, and an answered turn's time, added to its user's day (UTC); the daily token budgets
(USER_DAILY_TOKEN_BUDGET per user, DAILY_TOKEN_BUDGET for everyone; 0 is no budget); the values /usage and /stats
show. Days are UTC days and budgets reset at 00:00 UTC. Imports storage's usage values and the store through a
Protocol."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

import structlog

from host.errors import StorageError
from host.storage.usage import DayTotals, Spent

log = structlog.get_logger("host.service")

TERMINAL_USER = 0  # the operator at a terminal has no Telegram id; their turns are counted as user 0


class Ledger(Protocol):
    async def add(self, user_id: int, day: str, spent: Spent) -> None: ...
    async def of_user(self, user_id: int, day: str) -> Spent: ...
    async def tokens_of_day(self, day: str) -> int: ...
    async def day(self, day: str) -> DayTotals: ...


@dataclass(frozen=True, slots=True)
class Budgets:
    per_user: int = 0  # tokens a user may spend a day; 0: no budget
    everyone: int = 0  # tokens all users together may spend a day; 0: no budget


@dataclass(frozen=True, slots=True)
class OverBudget:
    """Whose budget is spent ("yours" or "everyone's"), how big it is, and the seconds until it resets."""

    whose: Literal["yours", "everyone's"]
    budget: int
    seconds: int

    @property
    def text(self) -> str:
        spent = "You have used your" if self.whose == "yours" else "Everyone together has used the bot's"
        return (
            f"⏳ {spent} {self.budget:,} tokens for today. It resets at 00:00 UTC, in {duration(self.seconds)}."
            " Your message was not stored; send it again then."
        )


@dataclass(frozen=True, slots=True)
class UsageView:
    """A user's day, for /usage."""

    spent: Spent
    budget: int  # 0: none
    resets_in: int  # seconds until 00:00 UTC

    @property
    def text(self) -> str:
        """For /usage, in plain words."""
        spent = self.spent
        lines = [
            f"Today (UTC) you used {spent.tokens:,} tokens in {spent.turns:,} answers"
            f" ({spent.llm_calls:,} model calls, {spent.tool_calls:,} tool calls)."
        ]
        if self.budget:
            left = max(self.budget - spent.tokens, 0)
            lines.append(f"Your daily budget is {self.budget:,} tokens: {left:,} left.")
        else:
            lines.append("There is no daily budget.")
        lines.append(f"The day resets at 00:00 UTC, in {duration(self.resets_in)}.")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Stats:
    """The admin's figures for today (UTC) across every replica, and what this process is running now."""

    users: int
    blocked: int
    active_today: int
    running_now: int
    today: Spent

    @property
    def text(self) -> str:
        """For /stats, in plain words."""
        today = self.today
        average = f"{today.seconds / today.turns:.1f} s" if today.turns else "none yet"
        return "\n".join(
            [
                "Today (UTC), all replicas:",
                f"Users: {self.users:,} ({self.blocked:,} blocked), active today: {self.active_today:,}",
                f"Answers now (this process): {self.running_now:,}",
                f"Messages answered: {today.turns:,}",
                f"Model calls: {today.llm_calls:,}, tool calls: {today.tool_calls:,}",
                f"Average response time: {average}",
                f"Tokens: {today.tokens:,}",
            ]
        )


def duration(seconds: int) -> str:
    hours, minutes = divmod(max(seconds, 60) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def today(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).date().isoformat()


def seconds_to_reset(now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, int((midnight - now).total_seconds()))


class Usage:
    def __init__(self, ledger: Ledger, budgets: Budgets) -> None:
        self.ledger = ledger
        self.budgets = budgets

    async def over_budget(self, user_id: int) -> OverBudget | None:
        """Whether the user may not start a turn today: their budget, or everyone's, is spent."""
        day = today()
        if self.budgets.per_user and (await self.ledger.of_user(user_id, day)).tokens >= self.budgets.per_user:
            return OverBudget("yours", self.budgets.per_user, seconds_to_reset())
        if self.budgets.everyone and await self.ledger.tokens_of_day(day) >= self.budgets.everyone:
            return OverBudget("everyone's", self.budgets.everyone, seconds_to_reset())
        return None

    async def record(self, user_id: int | None, spent: Spent) -> None:
        """Add an answered turn's cost; a database that fails is logged (the answer is already on its way)."""
        try:
            await self.ledger.add(TERMINAL_USER if user_id is None else user_id, today(), spent)
        except StorageError as error:
            log.warning("usage_not_recorded", error=str(error), tokens=spent.tokens)

    async def of_user(self, user_id: int | None, *, budgeted: bool = True) -> UsageView:
        spent = await self.ledger.of_user(TERMINAL_USER if user_id is None else user_id, today())
        return UsageView(spent, self.budgets.per_user if budgeted else 0, seconds_to_reset())

    async def stats(self, running_now: int) -> Stats:
        totals = await self.ledger.day(today())
        return Stats(totals.users, totals.blocked, totals.active_users, running_now, totals.spent)
