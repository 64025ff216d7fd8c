"""`mcpbot chat`: the engine in a terminal. Streams answers to stdout and tool activity to stderr, so that
`--once` prints only the answer on stdout. A thin front end: parse, call the service, render. Imports the app,
the service and the errors only."""

import signal
import sys
import threading
from collections.abc import Coroutine
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Any, TextIO

import anyio
import anyio.from_thread
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from host.app import App
from host.errors import HostError, ModelUnavailable
from host.service import (
    MAX_SYSTEM_CHARS,
    ChatSettingsView,
    Request,
    SettingRefused,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    Who,
    parse_user_id,
)

HELP = (
    "Commands: /reset (new conversation), /tools, /servers (and the model), /settings, /model NAME,"
    " /temperature X, /system TEXT (or off), /reset settings, /block ID and /unblock ID (Telegram users),"
    " /reload (mcp_servers.json), /usage (today), /stats (everyone today), /mcp [on|off NAME] (servers for this"
    " chat), /export [FOLDER] (this conversation's history as JSON and Markdown files), /exit. Anything else goes"
    " to the model."
)


async def once(app: App, chat_id: int, text: str) -> int:
    """One turn; the answer alone on stdout. Exit status 1 when the turn failed."""
    return 0 if await _turn(app, chat_id, text, stream_to=None) else 1


async def interactive(app: App, chat_id: int) -> int:
    print(f"mcpbot chat (conversation {chat_id}). {HELP}", file=sys.stderr)
    send, lines = anyio.create_memory_object_stream[str](16)
    # A daemon thread reads stdin, so that Ctrl-C ends the chat at once even while it waits for a line.
    threading.Thread(target=_read_lines, args=(send, anyio.lowlevel.current_token()), daemon=True).start()
    async with lines:
        while True:
            print("> ", end="", flush=True)
            text = await _next_line(lines)
            if text is None or text in ("/exit", "/quit"):
                return 0
            try:
                await _until_interrupted(_command_or_turn(app, chat_id, text))
            except HostError as exc:
                print(f"error: {exc}", file=sys.stderr)


async def _until_interrupted(work: Coroutine[Any, Any, None]) -> None:
    """Run `work`; Ctrl-C (SIGINT) stops it and returns to the prompt instead of ending the chat."""
    failure: HostError | None = None
    async with anyio.create_task_group() as tasks:

        async def stop_on_interrupt() -> None:
            with anyio.open_signal_receiver(signal.SIGINT) as signals:
                async for _ in signals:
                    print("\n[stopped; your message is kept in the conversation]", file=sys.stderr)
                    tasks.cancel_scope.cancel()

        tasks.start_soon(stop_on_interrupt)
        try:
            await work
        except HostError as exc:  # raised as itself, not inside the task group's ExceptionGroup
            failure = exc
        tasks.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _command_or_turn(app: App, chat_id: int, text: str) -> None:
    if not text:
        return
    name, _, args = text.partition(" ")
    args = args.strip()
    if text == "/reset":
        await app.service.reset(chat_id)
        print("Started a new conversation.", file=sys.stderr)
    elif name in ("/settings", "/model", "/temperature", "/system") or (name == "/reset" and args == "settings"):
        await _settings(app, chat_id, name, args)
    elif text == "/tools":
        await _print_tools(app, chat_id)
    elif text == "/servers":
        await _print_servers(app, chat_id)
    elif name in ("/block", "/unblock"):
        await _block_or_unblock(app, text)
    elif name == "/mcp":
        await _servers_on_or_off(app, chat_id, args)
    elif text == "/usage":
        print((await app.service.usage_of(None)).text, file=sys.stderr)
    elif text == "/stats":
        print((await app.service.stats()).text, file=sys.stderr)
    elif name == "/export":
        await _export(app, chat_id, args)
    elif text == "/reload":
        print(f"Reloaded {app.settings.mcp_servers_config}: {(await app.service.reload()).summary()}.", file=sys.stderr)
    elif text.startswith("/") and text != "/":
        print(HELP, file=sys.stderr)
    else:
        await _turn(app, chat_id, text, stream_to=sys.stdout)


async def _block_or_unblock(app: App, text: str) -> None:
    """/block ID or /unblock ID, as the operator (who is never refused)."""
    command, _, argument = text.partition(" ")
    user_id = parse_user_id(argument)
    if user_id is None:
        print(f"Usage: {command} USER_ID", file=sys.stderr)
    elif command == "/block":
        outcome = await app.service.block(user_id, None)
        print(
            {"blocked": "Blocked.", "already": "Blocked already.", "admin": "An admin cannot be blocked."}[outcome],
            file=sys.stderr,
        )
    else:
        print("Unblocked." if await app.service.unblock(user_id, None) else "Was not blocked.", file=sys.stderr)


async def _export(app: App, chat_id: int, folder: str) -> None:
    """/export [FOLDER]: the terminal chat's history (every conversation, /reset ones too) as the two files /export
    sends in Telegram, written into FOLDER (default the current directory); their paths."""
    files = await app.service.export(None, terminal_chat=chat_id)
    if files.messages == 0:
        print("There is nothing to export: this chat has no messages.", file=sys.stderr)
        return
    stem = f"mcpbot-export-chat{chat_id}-{datetime.now(UTC).date().isoformat()}"
    try:
        for suffix, data in (("json", files.json), ("md", files.markdown)):
            path = anyio.Path(folder or ".") / f"{stem}.{suffix}"
            await path.write_bytes(data)
            print(f"wrote {await path.absolute()} ({len(data):,} bytes)", file=sys.stderr)
    except OSError as error:
        print(f"Could not write the export: {error.strerror or error} ({error.filename or folder})", file=sys.stderr)


async def _settings(app: App, chat_id: int, name: str, args: str) -> None:
    """The chat's own settings, as in Telegram; the operator at the terminal may change them."""
    who = Who(chat_id)
    result: ChatSettingsView | SettingRefused
    if name == "/reset":
        result = await app.service.reset_settings(who)
    elif name == "/settings" or not args:
        result = await app.service.chat_settings(chat_id)
    elif name == "/model":
        result = await app.service.choose_model(who, args)
    elif name == "/temperature":
        result = await app.service.choose_temperature(who, args)
    else:
        result = await app.service.choose_system_prompt(who, args)
    if isinstance(result, SettingRefused):
        print(result.text, file=sys.stderr)
        return
    model = result.model + (" (the default)" if result.model_is_default else "")
    temperature = f"{result.temperature:g}" + (" (the default)" if result.temperature_is_default else "")
    print(f"model: {model}; choices: {', '.join(result.models)}", file=sys.stderr)
    print(f"temperature: {temperature} (0-2)", file=sys.stderr)
    print(f"system prompt (at most {MAX_SYSTEM_CHARS} characters): {result.system_prompt or 'none'}", file=sys.stderr)


async def _servers_on_or_off(app: App, chat_id: int, args: str) -> None:
    """/mcp lists which servers this chat's model is offered; /mcp on|off NAME switches one."""
    switch, _, name = args.partition(" ")
    if switch in ("on", "off") and name.strip():
        result = await app.service.switch_server(Who(chat_id), name.strip(), on=switch == "on")
        if isinstance(result, SettingRefused):
            print(result.text, file=sys.stderr)
            return
    elif args:
        print("Usage: /mcp, /mcp on NAME, /mcp off NAME", file=sys.stderr)
        return
    off = (await app.service.chat_settings(chat_id)).servers_off
    for server in await app.service.servers(chat_id):
        print(f"{server.name}: {'off' if server.name in off else 'on'}", file=sys.stderr)


def _read_lines(send: MemoryObjectSendStream[str], token: anyio.lowlevel.EventLoopToken) -> None:
    """Lines from stdin to the chat; at the end of input (Ctrl-D) the stream is closed, in the event loop's own
    thread, since closing it from this one would not wake the chat waiting for the next line."""
    try:
        for line in sys.stdin:
            anyio.from_thread.run(send.send, line, token=token)
    finally:
        anyio.from_thread.run_sync(send.close, token=token)


async def _next_line(lines: MemoryObjectReceiveStream[str]) -> str | None:
    try:
        return (await lines.receive()).strip()
    except anyio.EndOfStream:
        return None


async def _turn(app: App, chat_id: int, text: str, stream_to: TextIO | None) -> bool:
    """Run one turn; stream text to `stream_to` (or print only the final answer when None)."""
    try:
        async with aclosing(app.service.turn(Request(chat_id, text))) as events:
            async for event in events:
                if isinstance(event, TextDelta) and stream_to is not None:
                    stream_to.write(event.text)
                    stream_to.flush()
                elif isinstance(event, ToolStarted):
                    print(f"\n[{event.server}: {event.tool} {_short(event.arguments)}]", file=sys.stderr)
                elif isinstance(event, ToolFinished):
                    outcome = "ok" if event.ok else "failed"
                    print(f"[{event.server}: {event.tool} {outcome} in {event.seconds:.2f} s]", file=sys.stderr)
                elif isinstance(event, TurnFinished):
                    if stream_to is None:
                        print(event.text)
                    else:
                        stream_to.write("\n")
    except ModelUnavailable as exc:
        print(
            f"\n{exc}. Your message is kept in the conversation; try again later, or check LLM_BASE_URL.",
            file=sys.stderr,
        )
        return False
    except HostError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return False
    return True


async def _print_tools(app: App, chat_id: int) -> None:
    tools = await app.service.tools(chat_id)
    if not tools:
        print("No tools are available.", file=sys.stderr)
    for tool in tools:
        print(f"{tool.name}  {tool.summary[:100]}", file=sys.stderr)


async def _print_servers(app: App, chat_id: int) -> None:
    model = "answering" if await app.service.model_answers() else "not answering"
    print(f"model {app.settings.llm_model_name} at {app.settings.llm_base_url}: {model}", file=sys.stderr)
    for server in await app.service.servers(chat_id):
        state = server.state if server.reason is None else f"{server.state}: {server.reason}"
        print(f"{server.name} [{server.transport}] {state}, {server.tools} tools", file=sys.stderr)


def _short(arguments: object, limit: int = 80) -> str:
    text = str(arguments)
    return text if len(text) <= limit else text[: limit - 3] + "..."
