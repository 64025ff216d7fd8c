"""Broadcasts on a real SQLite file and on this machine's PostgreSQL (a fresh database each, since a broadcast goes
to every user there is): who gets one, one claim among replicas and the takeover of a lapsed lease, each
recipient's outcome, and the counts reported (and audited) once."""

from datetime import timedelta

import anyio
import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Connection

from host.storage import ConversationStore, Sealer
from host.storage.models import Broadcast, User, utcnow

pytestmark = pytest.mark.anyio

SECRET = "a-secret-key-of-some-length"


async def add_users(store: ConversationStore, *user_ids: int, unreachable: bool = False) -> None:
    values = [
        {"id": user, "first_seen": utcnow(), "preferences": {}, "unreachable_since": utcnow() if unreachable else None}
        for user in user_ids
    ]
    await store.transactions.write("add users", lambda connection: connection.execute(insert(User), values))


async def test_a_broadcast_goes_to_every_reachable_unblocked_user_and_its_text_is_sealed(empty_url: str) -> None:
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url, Sealer(SECRET)) as store:
            await add_users(store, 1, 2, 3, 4)
            await add_users(store, 5, unreachable=True)
            await store.block_user(4, by=None)
            broadcast_id, recipients = await store.broadcasts.create("the secret launch date", by=7)
            assert recipients == 3
            assert await store.broadcasts.pending(broadcast_id, 10) == [1, 2, 3]
            assert await store.broadcasts.pending(broadcast_id, 2) == [1, 2]
            raw = await store.transactions.read(
                "read raw", lambda connection: connection.execute(text("SELECT text FROM broadcasts")).scalar_one()
            )
            assert "launch" not in raw
            progress = await store.broadcasts.progress(broadcast_id)
            assert progress is not None and (progress.pending, progress.recipients, progress.finished) == (3, 3, False)
            assert await store.broadcasts.progress(broadcast_id + 1) is None
            (entry,) = await store.audit.recent()
            assert (entry.actor, entry.action, entry.subject, entry.detail) == (
                7,
                "broadcast",
                broadcast_id,
                {"recipients": 3},
            )


async def test_one_replica_claims_a_broadcast_and_another_takes_it_over_when_its_lease_lapses(empty_url: str) -> None:
    with anyio.fail_after(30):
        async with (
            ConversationStore.open(empty_url, Sealer(SECRET)) as one,
            ConversationStore.open(empty_url, Sealer(SECRET)) as two,
        ):
            await add_users(one, 1)
            broadcast_id, _ = await one.broadcasts.create("hello", by=None)
            claims = []

            async def claim(store: ConversationStore) -> None:
                claims.append((store.owner, await store.broadcasts.claim(store.owner, alone=False)))

            async with anyio.create_task_group() as replicas:
                for store in (one, two):
                    replicas.start_soon(claim, store)
            winners = [(owner, claimed) for owner, claimed in claims if claimed is not None]
            assert len(winners) == 1
            holder, claimed = winners[0]
            assert claimed is not None and (claimed.id, claimed.text, claimed.created_by) == (
                broadcast_id,
                "hello",
                None,
            )
            first, other = (one, two) if holder == one.owner else (two, one)
            assert await first.broadcasts.claim(first.owner, alone=False) is not None  # its own again
            assert await other.broadcasts.claim(other.owner, alone=False) is None  # the lease holds
            assert await first.broadcasts.renew(broadcast_id, first.owner)

            def lapse(connection: Connection) -> None:
                connection.execute(update(Broadcast).values(lease_until=utcnow() - timedelta(seconds=1)))

            await first.transactions.write("lapse the lease", lapse)
            taken = await other.broadcasts.claim(other.owner, alone=False)
            assert taken is not None and taken.id == broadcast_id
            assert not await first.broadcasts.renew(broadcast_id, first.owner)  # so the first stops sending
            assert await first.broadcasts.finish(broadcast_id, first.owner) is None
            assert await first.broadcasts.claim(first.owner, alone=True) is not None  # alone: held leases too


async def test_outcomes_are_counted_reported_once_and_a_skipped_user_is_left_out_next_time(empty_url: str) -> None:
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url) as store:
            await add_users(store, 1, 2, 3, 4)
            broadcast_id, _ = await store.broadcasts.create("first", by=7)
            assert await store.broadcasts.claim(store.owner, alone=False) is not None
            await store.broadcasts.mark(broadcast_id, 1, "sent", store.owner)
            await store.broadcasts.mark(broadcast_id, 2, "failed", store.owner)
            await store.broadcasts.mark(broadcast_id, 3, "skipped", store.owner)
            assert await store.broadcasts.pending(broadcast_id, 10) == [4]
            await store.broadcasts.mark(broadcast_id, 4, "sent", store.owner)
            finished = await store.broadcasts.finish(broadcast_id, store.owner)
            assert finished is not None
            assert (finished.sent, finished.failed, finished.skipped, finished.pending, finished.finished) == (
                2, 1, 1, 0, True,
            )  # fmt: skip
            assert await store.broadcasts.finish(broadcast_id, store.owner) is None  # reported once
            assert await store.broadcasts.claim(store.owner, alone=True) is None  # nothing left to send
            unreachable = await store.transactions.read(
                "read users",
                lambda connection: list(connection.scalars(select(User.id).where(User.unreachable_since.is_not(None)))),
            )
            assert unreachable == [3]
            second, recipients = await store.broadcasts.create("second", by=7)
            assert recipients == 3 and await store.broadcasts.pending(second, 10) == [1, 2, 4]
            entries = [(entry.action, entry.subject, entry.detail) for entry in reversed(await store.audit.recent())]
            assert entries == [
                ("broadcast", broadcast_id, {"recipients": 4}),
                ("broadcast_finished", broadcast_id, {"sent": 2, "failed": 1, "skipped": 1}),
                ("broadcast", second, {"recipients": 3}),
            ]


async def test_a_user_blocked_after_the_broadcast_was_created_is_skipped_not_sent_it(empty_url: str) -> None:
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url) as store:
            await add_users(store, 1, 2)
            broadcast_id, recipients = await store.broadcasts.create("hello", by=None)
            await store.block_user(2, by=None)
            assert recipients == 2 and await store.broadcasts.pending(broadcast_id, 10) == [1]
            progress = await store.broadcasts.progress(broadcast_id)
            assert progress is not None and (progress.pending, progress.skipped) == (1, 1)


async def test_a_replica_that_lost_its_lease_records_nothing_more_and_one_broadcast_goes_out_at_a_time(
    empty_url: str,
) -> None:
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url) as one, ConversationStore.open(empty_url) as two:
            await add_users(one, 1, 2)
            first, _ = await one.broadcasts.create("first", by=None)
            await two.broadcasts.create("second", by=None)
            assert await one.broadcasts.claim(one.owner, alone=False) is not None
            assert await two.broadcasts.claim(two.owner, alone=False) is None  # one is being sent: not a second

            def lapse(connection: Connection) -> None:
                connection.execute(update(Broadcast).values(lease_until=utcnow() - timedelta(seconds=1)))

            await one.transactions.write("let the lease lapse", lapse)
            taken = await two.broadcasts.claim(two.owner, alone=False)
            assert taken is not None and taken.id == first
            assert await one.broadcasts.mark(first, 1, "sent", one.owner) is False  # the old owner stops here
            assert await two.broadcasts.mark(first, 1, "sent", two.owner) is True
            assert await two.broadcasts.mark(first, 1, "sent", two.owner) is False  # recorded once
