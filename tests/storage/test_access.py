"""The blocklist and the once-a-day refusal notices on a real SQLite file and on this machine's PostgreSQL: kept
across a restart, and atomic when several replicas refuse the same user at once."""

from collections.abc import Callable

import anyio
import pytest

from host.storage import ConversationStore

pytestmark = pytest.mark.anyio


async def test_a_block_lasts_across_a_restart_until_it_is_lifted(store_url: str, new_id: Callable[[], int]) -> None:
    user, admin = new_id(), new_id()
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as store:
            assert not await store.is_blocked(user)
            assert await store.block_user(user, admin) is True
            assert await store.block_user(user, admin) is False  # already blocked
        async with ConversationStore.open(store_url) as store:
            assert await store.is_blocked(user)
            assert await store.unblock_user(user) is True
            assert await store.unblock_user(user) is False
            assert not await store.is_blocked(user)


async def test_one_notice_a_day_even_when_replicas_refuse_at_once(store_url: str, new_id: Callable[[], int]) -> None:
    user = new_id()
    claims: list[bool] = []
    with anyio.fail_after(20):
        async with ConversationStore.open(store_url) as one, ConversationStore.open(store_url) as two:

            async def refuse(store: ConversationStore) -> None:
                claims.append(await store.claim_refusal_notice(user, "2026-12-04"))

            async with anyio.create_task_group() as replicas:
                for store in (one, two, one, two):
                    replicas.start_soon(refuse, store)
            assert await one.claim_refusal_notice(user, "2026-12-05") is True  # a new day, a new notice
            assert await one.forget_refusal_notices("2026-12-05") >= 1
            assert await two.claim_refusal_notice(user, "2026-12-04") is True  # forgotten: claimable again
    assert sorted(claims) == [False, False, False, True]
