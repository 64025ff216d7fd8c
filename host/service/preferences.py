"""Each chat's own settings, for every front end: which model (of LLM_MODELS, all on the one LLM_BASE_URL), the
temperature, a personal system prompt; what a value may be, who may change it, and what a turn is given.

Values only come out (a ChatSettingsView, or a SettingRefused saying why not in plain words); front ends format
them. Imports storage's preferences value and the store through a Protocol.
"""

import math
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import structlog

from host.storage.preferences import ChatPreferences

log = structlog.get_logger("host.service")

MAX_SYSTEM_CHARS = 1000  # a personal system prompt: a few sentences of style, not a second set of instructions
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.0, 2.0  # what OpenAI-compatible servers accept
OFF = "off"  # `/system off` clears the personal prompt


class PreferenceStore(Protocol):
    async def preferences(self, chat_id: int, topic_id: int = 0) -> ChatPreferences: ...
    async def set_preferences(self, chat_id: int, topic_id: int, **changes: Any) -> ChatPreferences: ...
    async def reset_preferences(self, chat_id: int, topic_id: int = 0) -> None: ...


@dataclass(frozen=True, slots=True)
class Who:
    """Who asks to change which chat's settings. In a private chat (and at the terminal, user_id None) the user
    decides; in a group only the bot's admins (ADMIN_USER_IDS) do, since the settings apply to everyone there."""

    chat_id: int
    topic_id: int = 0
    user_id: int | None = None
    private: bool = True


@dataclass(frozen=True, slots=True)
class ChatSettingsView:
    """What a chat's next turn is given, and what it may choose from."""

    model: str
    temperature: float
    system_prompt: str | None
    models: tuple[str, ...]  # the choices, the operator's default first; one: there is no choice
    model_is_default: bool
    temperature_is_default: bool
    servers_off: tuple[str, ...] = ()  # MCP servers this chat turned off (/mcp)


Reason = Literal[
    "not_allowed", "no_choice", "unknown_model", "not_a_number", "out_of_range", "too_long", "unknown_server"
]


@dataclass(frozen=True, slots=True)
class SettingRefused:
    """Why a change was not made (nothing changed); `text` says it in plain words for any front end."""

    reason: Reason
    models: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.reason == "not_allowed":
            return "In a group only the bot's admins can change its settings."
        if self.reason == "no_choice":
            return f"There is no choice of model here: this bot answers with {self.models[0]} only."
        if self.reason == "unknown_model":
            return "That model is not offered here. Choose one of: " + ", ".join(self.models)
        if self.reason == "not_a_number":
            return f"The temperature is a number from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}, for example 0.7."
        if self.reason == "unknown_server":
            return "There is no server by that name here. /mcp lists them."
        if self.reason == "out_of_range":
            return f"The temperature must be from {MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}."
        return f"A personal system prompt holds at most {MAX_SYSTEM_CHARS:,} characters. Please send it shorter."


class Preferences:
    """The rules on a chat's settings; the store keeps them, the engine applies them on the next turn."""

    def __init__(
        self,
        store: PreferenceStore,
        *,
        default_model: str,
        allowed_models: list[str],
        default_temperature: float,
        admins: frozenset[int],
    ) -> None:
        self.store = store
        self.models = (default_model, *dict.fromkeys(name for name in allowed_models if name != default_model))
        self.default_temperature = default_temperature
        self.admins = admins

    def may_change(self, who: Who) -> bool:
        return who.private or who.user_id is None or who.user_id in self.admins

    async def for_turn(self, chat_id: int, topic_id: int = 0) -> ChatPreferences:
        """The chat's choices as a turn applies them: a model the operator no longer offers is dropped."""
        chosen = await self.store.preferences(chat_id, topic_id)
        if chosen.model is not None and chosen.model not in self.models:
            log.info("chat_model_not_offered", action="using the default")
            return replace(chosen, model=None)
        return chosen

    async def view(self, chat_id: int, topic_id: int = 0) -> ChatSettingsView:
        return self._view(await self.for_turn(chat_id, topic_id))

    def _view(self, chosen: ChatPreferences) -> ChatSettingsView:
        return ChatSettingsView(
            model=chosen.model or self.models[0],
            temperature=self.default_temperature if chosen.temperature is None else chosen.temperature,
            system_prompt=chosen.system_prompt,
            models=self.models,
            model_is_default=chosen.model is None,
            temperature_is_default=chosen.temperature is None,
            servers_off=chosen.servers_off,
        )

    async def choose_model(self, who: Who, name: str) -> ChatSettingsView | SettingRefused:
        name = name.strip()
        if not self.may_change(who):
            return SettingRefused("not_allowed")
        if len(self.models) == 1:
            return SettingRefused("no_choice", self.models)
        if name not in self.models:
            return SettingRefused("unknown_model", self.models)
        return await self._set(who, model=None if name == self.models[0] else name)

    async def choose_temperature(self, who: Who, text: str) -> ChatSettingsView | SettingRefused:
        if not self.may_change(who):
            return SettingRefused("not_allowed")
        try:
            value = float(text.strip().replace(",", "."))
        except ValueError:
            return SettingRefused("not_a_number")
        if not math.isfinite(value):
            return SettingRefused("not_a_number")
        if not MIN_TEMPERATURE <= value <= MAX_TEMPERATURE:
            return SettingRefused("out_of_range")
        return await self._set(who, temperature=value)

    async def choose_system_prompt(self, who: Who, text: str) -> ChatSettingsView | SettingRefused:
        """Set the personal prompt (`off`, or only spaces, clears it)."""
        if not self.may_change(who):
            return SettingRefused("not_allowed")
        text = text.strip()
        if len(text) > MAX_SYSTEM_CHARS:
            return SettingRefused("too_long")
        return await self._set(who, system_prompt=None if text.lower() in ("", OFF) else text)

    async def switch_server(
        self, who: Who, name: str, *, on: bool, servers: Collection[str]
    ) -> ChatSettingsView | SettingRefused:
        """Offer (on) or stop offering a server's tools to this chat's model; `servers` are the configured ones."""
        if not self.may_change(who):
            return SettingRefused("not_allowed")
        if name not in servers:
            return SettingRefused("unknown_server")
        off = set((await self.store.preferences(who.chat_id, who.topic_id)).servers_off) - {name}
        return await self._set(who, servers_off=sorted(off if on else off | {name}) or None)

    async def reset(self, who: Who) -> ChatSettingsView | SettingRefused:
        if not self.may_change(who):
            return SettingRefused("not_allowed")
        await self.store.reset_preferences(who.chat_id, who.topic_id)
        log.info("chat_settings_reset")
        return self._view(ChatPreferences())

    async def _set(self, who: Who, **changes: Any) -> ChatSettingsView:
        chosen = await self.store.set_preferences(who.chat_id, who.topic_id, **changes)
        log.info("chat_settings_changed", settings=sorted(changes))
        return self._view(chosen)
