"""Admin commands in Telegram (users in ADMIN_USER_IDS: /block, /unblock, /reload, /broadcast), and the command
menus: everyone's, and the admins' own, which only admins see (setMyCommands per chat scope).
Others who send an admin command get the help text."""

import html

import structlog
from telegram import Bot, BotCommand, BotCommandScopeChat, BotCommandScopeDefault
from telegram.error import TelegramError

from host.errors import ConfigError
from host.redact import redact_clipped
from host.service import BroadcastRefused, Service, parse_user_id
from host.telegram.incoming import ADMIN_COMMANDS, COMMANDS, Incoming
from host.telegram.send import Target, send_html

log = structlog.get_logger("host.telegram")

USAGE = "Usage: /{name} USER_ID (the user's numeric Telegram id)"
REASON_MAX_CHARS = 1500
STATS_PRIVATE = "Send /stats in a private chat with me: I do not post the bot's figures where others read."


async def register_commands(bot: Bot, admins: frozenset[int]) -> None:
    """Everyone's menu, then each admin's private chat gets the admin commands too; a failure is logged, never
    fatal (an admin who never started a chat with the bot cannot have a menu there yet)."""
    everyone = [BotCommand(name, description) for name, description in COMMANDS.items()]
    admin_menu = everyone + [BotCommand(name, description) for name, description in ADMIN_COMMANDS.items()]
    try:
        await bot.set_my_commands(everyone, scope=BotCommandScopeDefault())
    except TelegramError as error:
        log.warning("commands_not_registered", error=str(error))
    for admin in sorted(admins):
        try:
            await bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin))
        except TelegramError as error:
            log.warning("admin_commands_not_registered", admin=admin, error=str(error))


async def admin_command(service: Service, bot: Bot, message: Incoming, target: Target) -> None:
    """/block and /unblock USER_ID, /reload, /stats, /broadcast TEXT, for an admin."""
    name = message.text
    if name == "stats":
        text = (await service.stats()).text if message.private else STATS_PRIVATE
        await send_html(bot, target, html.escape(text))
        return
    if name == "reload":
        await send_html(bot, target, html.escape(await reload_text(service, message.user_id)))
        return
    if name == "broadcast":
        await send_html(bot, target, html.escape(await broadcast_text(service, message.args, message.user_id)))
        return
    user_id = parse_user_id(message.args.split()[0]) if message.args else None
    if user_id is None:
        await send_html(bot, target, html.escape(USAGE.format(name=name)))
        return
    if name == "block":
        outcome = await service.block(user_id, message.user_id)
        text = {
            "blocked": f"Blocked {user_id}: nothing they send is stored or answered.",
            "already": f"{user_id} was blocked already.",
            "admin": f"{user_id} is an admin (ADMIN_USER_IDS) and cannot be blocked.",
        }[outcome]
    else:
        unblocked = await service.unblock(user_id, message.user_id)
        text = f"Unblocked {user_id}." if unblocked else f"{user_id} was not blocked."
    await send_html(bot, target, html.escape(text))


async def broadcast_text(service: Service, text: str, by: int | None) -> str:
    """/broadcast's answer: the broadcast started (the counts follow when it is done), or why not."""
    started = await service.broadcast(text, by)
    if isinstance(started, BroadcastRefused):
        return f"Nothing was sent: {started.reason}. Usage: /broadcast TEXT"
    return (
        f"Broadcast {started.id} to {started.recipients} users started; "
        "I will tell you how many got it when it is done."
    )


async def reload_text(service: Service, by: int | None) -> str:
    """/reload's answer: what changed, or why nothing did."""
    try:
        reloaded = await service.reload(by)
    except ConfigError as error:
        return f"Nothing changed: {reload_refusal(error)}"
    return f"Reloaded mcp_servers.json: {reloaded.summary()}."


def reload_refusal(error: ConfigError) -> str:
    """Why mcp_servers.json did not load, for an admin: redacted and clipped (a config error may quote values)."""
    return redact_clipped(str(error), REASON_MAX_CHARS)
