"""The audit log: what was done with authority (blocks, unblocks, reloads, broadcasts, deletions, exports and,
when AUDIT_TOOL_CALLS is on, tool calls by server and tool name). An entry never holds message content."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from host.storage.models import AuditEntry, utcnow
from host.storage.transactions import Transactions


@dataclass(frozen=True, slots=True)
class Audited:
    at: datetime
    actor: int | None  # None: the operator (a terminal, the admin API)
    action: str
    subject: int | None
    detail: dict[str, Any]


def record(connection: Connection, actor: int | None, action: str, subject: int | None, **detail: Any) -> None:
    """One entry, inside the caller's transaction."""
    connection.execute(
        insert(AuditEntry).values(at=utcnow(), actor=actor, action=action, subject=subject, detail=detail)
    )


class AuditLog:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def record(self, actor: int | None, action: str, subject: int | None = None, **detail: Any) -> None:
        await self._transactions.write(
            "write the audit log", lambda connection: record(connection, actor, action, subject, **detail)
        )

    async def forget_tool_calls_before(self, before: datetime) -> int:
        """Delete the tool-call entries older than `before` (RETENTION_DAYS; the others are kept); how many."""
        old = delete(AuditEntry).where(AuditEntry.action == "tool_call", AuditEntry.at < before)
        return await self._transactions.write(
            "forget old audit entries", lambda connection: int(connection.execute(old).rowcount or 0)
        )

    async def recent(self, limit: int = 50) -> list[Audited]:
        """The newest entries, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)

        def work(connection: Connection) -> list[Audited]:
            return [
                Audited(row.at, row.actor, row.action, row.subject, row.detail) for row in connection.execute(query)
            ]

        return await self._transactions.read("read the audit log", work)
