"""What may be broadcast, on the real store (SQLite and PostgreSQL, a fresh database each): an empty text or one
over Telegram's 4096 UTF-16 code units is refused and creates nothing; a NUL, which PostgreSQL's text cannot hold,
is stored as U+FFFD; creating one rings this process's doorbell, so its sender starts at once."""

import anyio
import pytest

from host.service.broadcasts import Broadcasting, BroadcastRefused, Started
from host.storage import ConversationStore
from tests.stores import backend, databases, empty_url

pytestmark = pytest.mark.anyio
__all__ = ["backend", "databases", "empty_url"]  # the fixtures


async def test_only_a_text_telegram_can_send_is_broadcast(empty_url: str) -> None:
    with anyio.fail_after(30):
        async with ConversationStore.open(empty_url) as store:
            broadcasting = Broadcasting(store)
            for text in [" \n ", "😀" * 2049]:  # an emoji is two UTF-16 code units
                assert isinstance(await broadcasting.start(text, by=1), BroadcastRefused)
            assert await store.audit.recent() == []
            with anyio.fail_after(1):  # a doorbell rung now returns at once
                started = await broadcasting.start("a\x00b" + "😀" * 2046, by=1)
                await broadcasting.created(60)
            assert started == Started(id=1, recipients=0)
            claimed = await broadcasting.claim(alone=True)
            assert claimed is not None and claimed.text.startswith("a\ufffdb")
