"""Each chat's own settings in the store, on SQLite and PostgreSQL: set one at a time, kept per chat and topic,
cleared by None, reset to the defaults, and refused for a name that is not a setting."""

from collections.abc import Callable

import anyio
import pytest

from host.errors import StorageError
from host.storage import ConversationStore
from host.storage.preferences import ChatPreferences

pytestmark = pytest.mark.anyio


async def test_settings_are_kept_per_chat_and_topic_and_reset_to_the_defaults(
    store_url: str, new_id: Callable[[], int]
) -> None:
    chat, other = new_id(), new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            assert await store.preferences(chat) == ChatPreferences()
            await store.set_preferences(chat, 0, model="big")
            after = await store.set_preferences(chat, 0, temperature=1.25, system_prompt="Be terse.")
            assert after == ChatPreferences("big", 1.25, "Be terse.")  # one change leaves the others as they were
            await store.set_preferences(chat, 3, model="small")
            assert await store.set_preferences(chat, 0, system_prompt=None) == ChatPreferences("big", 1.25, None)
            with pytest.raises(StorageError, match="not a chat setting"):
                await store.set_preferences(chat, 0, role="admin")
        async with ConversationStore.open(store_url) as store:  # stored, not held in memory
            assert await store.preferences(chat) == ChatPreferences("big", 1.25, None)
            assert await store.preferences(chat, 3) == ChatPreferences(model="small")
            assert await store.preferences(other) == ChatPreferences()
            await store.reset_preferences(chat)
            assert await store.preferences(chat) == ChatPreferences()
            assert await store.preferences(chat, 3) == ChatPreferences(model="small")  # another topic's stay
