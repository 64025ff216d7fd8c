"""Broadcasts on the database: an admin's text for every known user, one recipient row each, and the process
sending it (owner and lease, so that another process takes over when it dies).

A broadcast is created with its recipients in one transaction: every user in `users` except those Telegram said
blocked the bot (`unreachable_since`) and those on the blocklist. The sender marks each recipient right after its
send, so a restart resumes with the pending ones. Creating and finishing write their audit entries in the same
transaction, so that each happens once with its entry. The text is sealed at rest by its column (see sealing).
Imports nothing from the host but storage.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import BigInteger, String, and_, delete, exists, func, insert, literal, or_, select, update
from sqlalchemy.engine import Connection

from host.storage import audit
from host.storage.models import BlockedUser, Broadcast, BroadcastRecipient, User, utcnow
from host.storage.transactions import Transactions

# A sender renews its lease every third of this; a process that died lets its broadcast go after this long.
LEASE = timedelta(seconds=60)

Outcome = Literal["sent", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A broadcast this process holds the lease of, to send now."""

    id: int
    text: str
    created_by: int | None  # the admin to tell the counts when it is done; None: the operator (admin API)


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a broadcast is: its recipients by state, and whether it is finished."""

    id: int
    pending: int
    sent: int
    failed: int
    skipped: int  # they blocked the bot, or deleted their account
    finished: bool

    @property
    def recipients(self) -> int:
        return self.pending + self.sent + self.failed + self.skipped


class Broadcasts:
    """The statements on broadcasts and broadcast_recipients, each in a transaction of its own."""

    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def create(self, text: str, by: int | None) -> tuple[int, int]:
        """A new broadcast by `by` (None: the operator) with a pending recipient per reachable, unblocked user, and
        its audit entry; (its id, how many recipients)."""

        def work(connection: Connection) -> tuple[int, int]:
            created = connection.execute(
                insert(Broadcast).values(text=text, created_by=by, created_at=utcnow()).returning(Broadcast.id)
            )
            broadcast_id = int(created.scalar_one())
            reachable = select(literal(broadcast_id, BigInteger), User.id, literal("pending", String)).where(
                User.unreachable_since.is_(None), ~exists().where(BlockedUser.user_id == User.id)
            )
            connection.execute(insert(BroadcastRecipient).from_select(["broadcast_id", "user_id", "state"], reachable))
            recipients = int(
                connection.scalar(select(func.count()).where(BroadcastRecipient.broadcast_id == broadcast_id)) or 0
            )
            audit.record(connection, by, "broadcast", broadcast_id, recipients=recipients)
            return broadcast_id, recipients

        return await self._transactions.write("create the broadcast", work)

    async def claim(self, owner: str, *, alone: bool) -> Claimed | None:
        """Take the oldest unfinished broadcast that is `owner`'s to send: one without an owner, its own, or one
        whose lease lapsed, while no other process is sending one (Telegram's limit is the bot's, not a replica's:
        one broadcast goes out at a time); with `alone` (the only process, as with polling) any unfinished one.
        None when there is none (or another process took it a moment ago)."""
        now = utcnow()

        def work(connection: Connection) -> Claimed | None:
            unowned = or_(Broadcast.owner.is_(None), Broadcast.owner == owner, Broadcast.lease_until < now)
            other = Broadcast.__table__.alias("other")
            another_sending = exists().where(
                other.c.finished_at.is_(None), other.c.owner != owner, other.c.lease_until >= now
            )
            takeable = (
                Broadcast.finished_at.is_(None)
                if alone
                else and_(Broadcast.finished_at.is_(None), unowned, ~another_sending)
            )
            found = connection.execute(
                select(Broadcast.id, Broadcast.owner, Broadcast.text, Broadcast.created_by)
                .where(takeable)
                .order_by(Broadcast.id)
                .limit(1)
            ).first()
            if found is None:
                return None
            same_owner = Broadcast.owner.is_(None) if found.owner is None else Broadcast.owner == found.owner
            taken = connection.execute(  # checked again: another process may have claimed or renewed it since
                update(Broadcast)
                .where(Broadcast.id == found.id, same_owner, takeable)
                .values(owner=owner, lease_until=now + LEASE)
            )
            if taken.rowcount != 1:
                return None
            return Claimed(int(found.id), str(found.text), found.created_by)

        return await self._transactions.write("claim a broadcast", work)

    async def renew(self, broadcast_id: int, owner: str) -> bool:
        """Extend `owner`'s lease; False when the broadcast is no longer its (finished, or taken over)."""

        def work(connection: Connection) -> bool:
            renewed = connection.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.owner == owner, Broadcast.finished_at.is_(None))
                .values(lease_until=utcnow() + LEASE)
            )
            return renewed.rowcount == 1

        return await self._transactions.write("renew the broadcast's lease", work)

    async def pending(self, broadcast_id: int, limit: int) -> list[int]:
        """Up to `limit` users still to send to, by user id; those an admin blocked since it was created are
        skipped first."""
        waiting = (BroadcastRecipient.broadcast_id == broadcast_id) & (BroadcastRecipient.state == "pending")
        blocked = exists().where(BlockedUser.user_id == BroadcastRecipient.user_id)
        query = select(BroadcastRecipient.user_id).where(waiting).order_by(BroadcastRecipient.user_id).limit(limit)

        def work(connection: Connection) -> list[int]:
            connection.execute(update(BroadcastRecipient).where(waiting, blocked).values(state="skipped"))
            return [int(user) for user in connection.scalars(query)]

        return await self._transactions.write("read the broadcast's recipients", work)

    async def mark(self, broadcast_id: int, user_id: int, outcome: Outcome, owner: str) -> bool:
        """What became of one recipient, recorded only while `owner` holds the broadcast; False when it does not
        (another process took it over: the sender stops, having sent at most this one message twice). `skipped`
        (they blocked the bot) also marks the user unreachable, so that the next broadcast leaves them out until
        they write again."""
        held = exists().where(Broadcast.id == broadcast_id, Broadcast.owner == owner, Broadcast.finished_at.is_(None))

        def work(connection: Connection) -> bool:
            marked = connection.execute(
                update(BroadcastRecipient)
                .where(
                    BroadcastRecipient.broadcast_id == broadcast_id,
                    BroadcastRecipient.user_id == user_id,
                    BroadcastRecipient.state == "pending",
                    held,
                )
                .values(state=outcome)
            )
            if marked.rowcount != 1:
                return False
            if outcome == "skipped":
                connection.execute(update(User).where(User.id == user_id).values(unreachable_since=utcnow()))
            return True

        return await self._transactions.write("record a broadcast's send", work)

    async def forget_finished_before(self, before: datetime) -> int:
        """Delete the broadcasts finished before `before` (RETENTION_DAYS), with their recipients; how many."""
        old = delete(Broadcast).where(Broadcast.finished_at.is_not(None), Broadcast.finished_at < before)

        def work(connection: Connection) -> int:
            ids = select(Broadcast.id).where(Broadcast.finished_at.is_not(None), Broadcast.finished_at < before)
            connection.execute(delete(BroadcastRecipient).where(BroadcastRecipient.broadcast_id.in_(ids)))
            return int(connection.execute(old).rowcount or 0)

        return await self._transactions.write("forget old broadcasts", work)

    async def reachable_again(self, user_id: int) -> None:
        """The user wrote to the bot in private (a command): later broadcasts include them again."""
        again = (
            update(User).where(User.id == user_id, User.unreachable_since.is_not(None)).values(unreachable_since=None)
        )
        await self._transactions.write("mark the user reachable", lambda connection: connection.execute(again))

    async def progress(self, broadcast_id: int) -> Progress | None:
        """The broadcast's counts; None when there is no such broadcast."""
        return await self._transactions.read(
            "read the broadcast's progress", lambda connection: _progress(connection, broadcast_id)
        )

    async def finish(self, broadcast_id: int, owner: str) -> Progress | None:
        """Mark `owner`'s broadcast finished (its lease released) with the audit entry of its counts; its final
        counts, or None when it was not `owner`'s or finished already (so it is reported once)."""

        def work(connection: Connection) -> Progress | None:
            finished = connection.execute(
                update(Broadcast)
                .where(Broadcast.id == broadcast_id, Broadcast.owner == owner, Broadcast.finished_at.is_(None))
                .values(finished_at=utcnow(), owner=None, lease_until=None)
            )
            if finished.rowcount != 1:
                return None
            progress = _progress(connection, broadcast_id)
            assert progress is not None
            audit.record(
                connection,
                None,
                "broadcast_finished",
                broadcast_id,
                sent=progress.sent,
                failed=progress.failed,
                skipped=progress.skipped,
            )
            return progress

        return await self._transactions.write("finish the broadcast", work)


def _progress(connection: Connection, broadcast_id: int) -> Progress | None:
    finished_at = connection.execute(select(Broadcast.finished_at).where(Broadcast.id == broadcast_id)).first()
    if finished_at is None:
        return None
    counts: dict[str, int] = {
        state: count
        for state, count in connection.execute(
            select(BroadcastRecipient.state, func.count())
            .where(BroadcastRecipient.broadcast_id == broadcast_id)
            .group_by(BroadcastRecipient.state)
        )
    }
    return Progress(
        id=broadcast_id,
        pending=counts.get("pending", 0),
        sent=counts.get("sent", 0),
        failed=counts.get("failed", 0),
        skipped=counts.get("skipped", 0),
        finished=finished_at[0] is not None,
    )
