"""The rules on a chat's settings, on the real store (SQLite and PostgreSQL): what each value may be, who may
change it, what a turn is given when the operator stops offering a chosen model, and the list of choices."""

from collections.abc import Callable

import anyio
import pytest

from host.service.preferences import ChatSettingsView, Preferences, SettingRefused, Who
from host.storage import ConversationStore
from host.storage.preferences import ChatPreferences
from tests.stores import backend, databases, new_id, store_url

pytestmark = pytest.mark.anyio
__all__ = ["backend", "databases", "new_id", "store_url"]  # the fixtures


def rules(store: ConversationStore, models: list[str]) -> Preferences:
    return Preferences(
        store, default_model="base", allowed_models=models, default_temperature=0.7, admins=frozenset({1})
    )


async def test_each_value_is_checked_and_a_refusal_changes_nothing(store_url: str, new_id: Callable[[], int]) -> None:
    chat = new_id()
    me = Who(chat, user_id=chat, private=True)
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            offered = rules(store, ["big", "base", "big", " small "])
            assert offered.models == ("base", "big", " small ")  # the default first, each once
            for refused in [
                await offered.choose_model(me, "huge"),
                await offered.choose_temperature(me, "inf"),
                await offered.choose_temperature(me, "2.01"),
                await offered.choose_temperature(me, ""),
                await offered.choose_system_prompt(me, "z" * 1001),
            ]:
                assert isinstance(refused, SettingRefused), refused
            assert await store.preferences(chat) == ChatPreferences()
            assert isinstance(await offered.choose_system_prompt(me, "z" * 1000), ChatSettingsView)  # the cap itself
            chosen = await offered.choose_temperature(me, "1,5")  # a decimal comma, as many keyboards type it
            assert isinstance(chosen, ChatSettingsView) and chosen.temperature == 1.5
            cleared = await offered.choose_system_prompt(me, " OFF ")
            assert isinstance(cleared, ChatSettingsView) and cleared.system_prompt is None
            await offered.choose_model(me, "big")
            back = await offered.choose_model(me, "base")  # the default by name: stored as "the default"
            assert isinstance(back, ChatSettingsView) and back.model_is_default
            assert (await store.preferences(chat)).model is None


async def test_who_may_change_a_chats_settings(store_url: str, new_id: Callable[[], int]) -> None:
    group = -new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            offered = rules(store, ["big"])
            member = Who(group, 0, user_id=5, private=False)
            for refused in [
                await offered.choose_model(member, "big"),
                await offered.choose_temperature(member, "1"),
                await offered.choose_system_prompt(member, "hi"),
                await offered.reset(member),
            ]:
                assert refused == SettingRefused("not_allowed")
            assert isinstance(
                await offered.choose_model(Who(group, 0, user_id=1, private=False), "big"), ChatSettingsView
            )
            assert isinstance(
                await offered.choose_temperature(Who(group, 0, user_id=None, private=False), "1"), ChatSettingsView
            )
            assert await store.preferences(group) == ChatPreferences(model="big", temperature=1.0)


async def test_a_model_no_longer_offered_gives_the_default(store_url: str, new_id: Callable[[], int]) -> None:
    chat = new_id()
    with anyio.fail_after(30):
        async with ConversationStore.open(store_url) as store:
            await store.set_preferences(chat, 0, model="retired", temperature=0.1)
            offered = rules(store, ["big"])
            assert await offered.for_turn(chat) == ChatPreferences(None, 0.1, None)
            view = await offered.view(chat)
            assert (view.model, view.model_is_default, view.temperature) == ("base", True, 0.1)
            alone = rules(store, [])
            assert await alone.choose_model(Who(chat), "base") == SettingRefused("no_choice", ("base",))
