"""/mcp: which MCP servers this chat's model is offered. `/mcp` lists the configured servers with a button each
(✅ on, ⬜ off; a press switches it and the list is redrawn), `/mcp on NAME` and `/mcp off NAME` do the same in
text. The service decides who may (host.service.preferences: the user in private, admins in groups); button data
is checked like any text from a user."""

import html

import structlog
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import TelegramError

from host.service import ChatSettingsView, Service, SettingRefused, Who
from host.telegram.incoming import Incoming
from host.telegram.send import Target, send_html

log = structlog.get_logger("host.telegram")

BUTTON = "mcp:"  # then "on:" or "off:", then the server's name
CALLBACK_DATA_BYTES = 64  # Telegram's limit: a server with a longer name gets no button, only /mcp off NAME
USAGE = "Send /mcp to see the servers, or /mcp on NAME and /mcp off NAME."
NO_SERVERS = "No tool servers are configured."


def is_toggle_button(data: str) -> bool:
    return data.startswith(BUTTON)


async def command(service: Service, bot: Bot, message: Incoming, target: Target, who: Who) -> None:
    """/mcp, or /mcp on|off NAME."""
    if not message.args:
        await _menu(service, bot, target, who)
        return
    switch, _, name = message.args.partition(" ")
    if switch.lower() not in ("on", "off") or not name.strip():
        await send_html(bot, target, html.escape(USAGE))
        return
    result = await service.switch_server(who, name.strip(), on=switch.lower() == "on")
    await send_html(bot, target, html.escape(_outcome(result, name.strip())))


async def pressed(service: Service, bot: Bot, message: Incoming, who: Who) -> str:
    """A button of the list: switch that server, redraw the list in place; what to show the presser."""
    switch, _, name = message.text[len(BUTTON) :].partition(":")
    if switch not in ("on", "off") or not name:
        log.info("button_refused", reason="not a /mcp button")
        return USAGE
    result = await service.switch_server(who, name, on=switch == "on")
    if isinstance(result, ChatSettingsView):
        text, markup = await _listing(service, who, result)
        try:
            await bot.edit_message_text(
                text, chat_id=message.chat_id, message_id=message.message_id, parse_mode="HTML", reply_markup=markup
            )
        except TelegramError as error:  # too old to edit, or unchanged: the answer to the press says it all
            log.info("toggles_not_redrawn", error=str(error))
    return _outcome(result, name)


def _outcome(result: ChatSettingsView | SettingRefused, name: str) -> str:
    if isinstance(result, SettingRefused):
        return result.text
    state = "off: its tools are no longer offered here" if name in result.servers_off else "on"
    return f"{name} is {state}."


async def _menu(service: Service, bot: Bot, target: Target, who: Who) -> None:
    view = await service.chat_settings(who.chat_id, who.topic_id)
    text, markup = await _listing(service, who, view)
    await send_html(bot, target, text, markup=markup)


async def _listing(service: Service, who: Who, view: ChatSettingsView) -> tuple[str, InlineKeyboardMarkup | None]:
    names = [server.name for server in await service.servers(who.chat_id)]
    if not names:
        return NO_SERVERS, None
    buttons = []
    for name in names:
        on = name not in view.servers_off
        data = f"{BUTTON}{'off' if on else 'on'}:{name}"
        if len(data.encode()) <= CALLBACK_DATA_BYTES:
            buttons.append([InlineKeyboardButton(f"{'✅' if on else '⬜'} {name}", callback_data=data)])
    off = [name for name in names if name in view.servers_off]
    text = "The tool servers this chat's model may use. Tap one to switch it."
    if off:
        text += "\n\nOff here: " + ", ".join(f"<b>{html.escape(name)}</b>" for name in off)
    if not service.may_change_settings(who):
        text += "\n\nIn a group only the bot's admins can switch them."
    return text, InlineKeyboardMarkup(buttons)
