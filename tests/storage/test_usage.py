"""The usage ledger on a real SQLite file and on this machine's PostgreSQL: adds from several replicas at once sum
exactly (an atomic upsert), and a day's totals count what /stats shows."""

from collections.abc import Callable

import anyio
import pytest

from host.storage import ConversationStore
from host.storage.usage import Spent

pytestmark = pytest.mark.anyio


async def test_adds_from_two_replicas_at_once_sum_exactly(store_url: str, new_id: Callable[[], int]) -> None:
    user, day = new_id(), "1999-01-02"  # a day no other test of the shared PostgreSQL database uses
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as one, ConversationStore.open(store_url) as two:
            async with anyio.create_task_group() as replicas:
                for store in (one, two) * 10:
                    replicas.start_soon(store.usage.add, user, day, Spent(7, 1, 2, 1, 0.5))
            spent = await one.usage.of_user(user, day)
            assert spent == Spent(tokens=70 * 2, turns=20, llm_calls=40, tool_calls=20, seconds=10.0)
            assert await two.usage.tokens_of_day(day) == 140
            totals = await one.usage.day(day)
            assert totals.active_users == 1 and totals.spent.turns == 20
            assert await one.usage.of_user(user, "1999-01-03") == Spent()
