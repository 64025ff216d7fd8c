"""The stdio transport: a server as a child process speaking newline-delimited JSON-RPC on stdin and stdout.

Ours rather than the SDK's `stdio_client`, which parses a line of any size whole (a 40 MB line of small
items took over 1.5 GB) and hides the child's exit status. Here a line is bounded in bytes and in JSON
objects before it is parsed, bytes that are not UTF-8 are replaced, and the exit status is reported to the
Wire. Shutdown as the spec says: close stdin, wait, SIGTERM the process group, wait, SIGKILL.
Imports wire only.
"""

import json
import os
import re
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TextIO

import anyio
import mcp_types
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage

from host.mcp.wire import Wire

MAX_LINE_BYTES = 40 * 1024 * 1024  # one JSON-RPC message; a bit above wire.MAX_RESULT_CHARS
MAX_LINE_OBJECTS = 100_000  # "{" in one message: parsing costs about 1.5 KB per object
EXIT_WAIT = 2.0  # after stdin is closed, before SIGTERM
TERM_WAIT = 2.0  # after SIGTERM, before SIGKILL
KILL_WAIT = 2.0  # after SIGKILL, for the event loop to see the death
FLUSH_WAIT = 0.5  # for messages already accepted to reach the child's stdin
EXIT_NOTICED = 0.5  # after stdout closed, for the event loop to see the exit status
_CHUNK = 64 * 1024
_ID = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


class LineTooLarge(ValueError):
    """A message over the caps, refused unparsed."""


@asynccontextmanager
async def stdio_transport(
    command: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    errlog: TextIO,
    wire: Wire,
) -> AsyncIterator[
    tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]
]:
    """Start the server and yield the session's streams; on exit stop it, within EXIT/TERM/KILL_WAIT."""
    process = await anyio.open_process([command, *args], env=dict(env), cwd=cwd, stderr=errlog, start_new_session=True)
    to_session, from_server = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    to_server, from_session = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()
    stdout_ended = anyio.Event()

    async def read() -> None:
        assert process.stdout is not None
        try:
            async with to_session:
                async for item in _messages(process.stdout):
                    await to_session.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            pass  # the session is gone, or our own shutdown closed stdout
        finally:
            stdout_ended.set()
        await _drain(process.stdout)  # so that a server still writing can reach its exit

    async def write() -> None:
        assert process.stdin is not None
        try:
            async with from_session:
                async for item in from_session:
                    data = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode())
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await to_session.aclose()  # the server may still run: the session must see the connection end
        finally:
            writer_done.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(read)
        tasks.start_soon(write)
        try:
            yield from_server, to_server
        finally:
            with anyio.CancelScope(shield=True):
                if stdout_ended.is_set():  # it closed its end first: did it exit on its own?
                    await _exited(process, EXIT_NOTICED)
                wire.exit_status = process.returncode
                from_server.close()
                to_server.close()
                with anyio.move_on_after(FLUSH_WAIT):
                    await writer_done.wait()
                await _stop(process)
            tasks.cancel_scope.cancel()


async def _messages(stdout: ByteReceiveStream) -> AsyncIterator[SessionMessage | Exception]:
    """Each line as a message, or as the exception that explains why it is not one."""
    line = bytearray()
    dropping: bytes | None = None  # the start of a line over MAX_LINE_BYTES, whose rest is being skipped
    async for chunk in stdout:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            if dropping is not None:
                yield _refusal(dropping, f"more than {MAX_LINE_BYTES:,} bytes")
                dropping = None
            else:
                line += chunk[start:end]
                if item := _message(bytes(line)):
                    yield item
            line.clear()
            start = end + 1
        if dropping is None:
            line += chunk[start:]
            if len(line) > MAX_LINE_BYTES:
                dropping = bytes(line[:200])
                line.clear()
    if line and dropping is None and (item := _message(bytes(line))):
        yield item


def _message(line: bytes) -> SessionMessage | Exception | None:
    if not line.strip():
        return None
    if line.count(b"{") > MAX_LINE_OBJECTS:
        return _refusal(line[:200], f"more than {MAX_LINE_OBJECTS:,} JSON objects")
    text = line.decode("utf-8", errors="replace")
    try:
        return SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(text, by_name=False))
    except ValueError as exc:  # not JSON-RPC: the session logs it, the wire keeps it to explain a failure
        return exc


def _refusal(head: bytes, why: str) -> SessionMessage | Exception:
    """An error answer to the request the oversized line answered, when its id can be read from its start."""
    message = f"the server sent a message of {why}; the limit keeps the bot's memory bounded"
    found = _ID.search(head)
    if found is None:
        return LineTooLarge(message)
    ident: Any = json.loads(found.group(1))
    error = mcp_types.ErrorData(code=mcp_types.INTERNAL_ERROR, message=message)
    return SessionMessage(mcp_types.JSONRPCError(jsonrpc="2.0", id=ident, error=error))


async def _drain(stdout: ByteReceiveStream) -> None:
    with anyio.CancelScope(shield=True), suppress(anyio.EndOfStream, anyio.ClosedResourceError, OSError):
        async for _chunk in stdout:
            pass


async def _stop(process: Process) -> None:
    assert process.stdin is not None and process.stdout is not None
    with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdin.aclose()
    for sig, wait in ((None, EXIT_WAIT), (signal.SIGTERM, TERM_WAIT), (signal.SIGKILL, KILL_WAIT)):
        if sig is not None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)  # its own group (start_new_session): the server and its children
        if await _exited(process, wait):
            break
    with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdout.aclose()
    if process.returncode is not None:
        with anyio.move_on_after(KILL_WAIT):
            await process.aclose()


async def _exited(process: Process, seconds: float) -> bool:
    """Whether the process ended within `seconds`. It polls: `wait()` also waits for the pipes to close, and a
    child of the server that kept them open would make an exited server look alive."""
    deadline = anyio.current_time() + seconds
    while process.returncode is None and anyio.current_time() < deadline:  # noqa: ASYNC110 - only wait() tells
        await anyio.sleep(0.01)
    return process.returncode is not None


def exit_text(status: int) -> str:
    """`it exited with status 3`, or `it was killed by SIGKILL`."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"it was killed by {name}"
    return f"it exited with status {status}"
