"""The `mcpbot` command: run | chat | servers | call. Parses arguments and prints; the work happens elsewhere."""

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from host.errors import ConfigError, HostError
from host.log import configure_logging
from host.mcp.config import ServerConfig, load_servers
from host.mcp.registry import Registry
from host.service import status
from host.settings import Settings, load_settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(_log_level(options, settings), settings.log_format)
        code = options.handler(options, settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        code = 2
    except HostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _log_level(options: argparse.Namespace, settings: Settings) -> str:
    """LOG_LEVEL; but a command other than `run` on a terminal logs only warnings and errors unless LOG_LEVEL is
    set, so that log lines do not land in the middle of its output."""
    if options.handler is not _run and sys.stderr.isatty() and "log_level" not in settings.model_fields_set:
        return "WARNING"
    return settings.log_level


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcpbot", description="A Telegram bot that is a true MCP host.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the Telegram bot")
    run.set_defaults(handler=_run)

    chat = commands.add_parser("chat", help="chat with the bot in this terminal")
    chat.add_argument("--once", metavar="TEXT", help="send one message, print only the answer, exit")
    chat.add_argument("--chat-id", type=int, default=0, help="conversation to use (same id, same history)")
    chat.set_defaults(handler=_chat)

    servers = commands.add_parser("servers", help="connect to every configured MCP server and list its tools")
    servers.add_argument("--json", action="store_true", help="print JSON instead of text")
    servers.set_defaults(handler=_servers)

    call = commands.add_parser("call", help="call one tool of one configured server and print the result")
    call.add_argument("server", help="server name, as in mcp_servers.json")
    call.add_argument("tool", help="the server's own tool name")
    call.add_argument("arguments", nargs="?", default="{}", help="tool arguments as a JSON object")
    call.add_argument("--chat-id", type=int, default=0, help="chat whose instance of a per-chat server to use")
    call.set_defaults(handler=_call)
    return parser


def _run(_options: argparse.Namespace, settings: Settings) -> int:
    from host.telegram.lifecycle import run_bot

    return anyio.run(run_bot, settings)


def _chat(options: argparse.Namespace, settings: Settings) -> int:
    from host import chat
    from host.app import open_app

    async def run() -> int:
        async with open_app(settings) as app:
            if options.once is not None:
                return await chat.once(app, options.chat_id, options.once)
            return await chat.interactive(app, options.chat_id)

    return anyio.run(run)


def _servers(options: argparse.Namespace, settings: Settings) -> int:
    configs = load_servers(settings.mcp_servers_config, data_dir=settings.data_dir)
    report = anyio.run(_server_report, configs)
    code = 1 if any(server["status"] != "connected" for server in report) else 0  # for scripts and health checks
    if options.json:
        print(json.dumps({"servers": report}, indent=2, ensure_ascii=False))
        return code
    if not report:
        print(f"no enabled servers in {settings.mcp_servers_config}")
    for server in report:
        state = server["status"] if server["error"] is None else f"{server['status']}: {server['error']}"
        print(f"{server['name']}  [{server['transport']}]  {state}")
        for tool in server["tools"]:
            summary = (tool["description"] or "").strip().splitlines()
            print(f"    {tool['name']}  {summary[0][:100] if summary else ''}".rstrip())
    return code


async def _server_report(configs: list[ServerConfig]) -> list[dict[str, Any]]:
    async with Registry(configs) as registry:
        tools = status.tools(await registry.catalogue())
        return [
            {
                "name": server.name,
                "transport": server.transport,
                "status": "connected" if server.connected else "failed",
                "error": server.reason,
                "tools": [
                    {"name": tool.name, "mcp_name": tool.mcp_name, "description": tool.description}
                    for tool in tools
                    if tool.server == server.name
                ],
            }
            for server in await status.servers(registry)
        ]


def _call(options: argparse.Namespace, settings: Settings) -> int:
    try:
        arguments = json.loads(options.arguments)
    except json.JSONDecodeError as exc:
        print(f"arguments are not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(arguments, dict):
        print('arguments must be a JSON object, for example \'{"path": "notes.txt"}\'', file=sys.stderr)
        return 2
    listed = load_servers(settings.mcp_servers_config, data_dir=settings.data_dir)
    configs = [config for config in listed if config.name == options.server]
    if not configs:
        print(f"no server named {options.server!r} in {settings.mcp_servers_config}", file=sys.stderr)
        return 2
    if configs[0].disabled:
        print(f"server {options.server!r} is disabled in {settings.mcp_servers_config}", file=sys.stderr)
        return 2

    async def call() -> int:
        async with Registry(configs) as registry:
            try:
                result = await registry.call_server_tool(options.server, options.tool, arguments, options.chat_id)
            except HostError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            print(result.text(), file=sys.stderr if result.is_error else sys.stdout)
            return 1 if result.is_error else 0

    return anyio.run(call)


if __name__ == "__main__":
    main()
