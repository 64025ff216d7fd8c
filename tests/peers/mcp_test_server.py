"""A small MCP server the tests drive over stdio, SSE and Streamable HTTP.

Its tools expose what the host must handle: echoes, a hang, a crash, a failing tool, an image, a huge
result, a tool list that changes, and (with --page-size) a paginated tools/list.
"""

import argparse
import base64
import contextlib
import os
import sys
from typing import Any

import anyio
import mcp_types
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.runner import serve_dual_era_loop
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage

PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class PagedServer(MCPServer):
    """Lists its tools `page_size` at a time, with a cursor; `mismatch` breaks its own output schema."""

    page_size = 0

    async def _handle_list_tools(self, ctx: Any, params: mcp_types.PaginatedRequestParams | None) -> Any:
        tools = await self.list_tools()
        if not self.page_size:
            return mcp_types.ListToolsResult(tools=tools)
        start = int(params.cursor) if params and params.cursor else 0
        end = start + self.page_size
        return mcp_types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)

    async def _handle_call_tool(self, ctx: Any, params: mcp_types.CallToolRequestParams) -> Any:
        if params.name == "mismatch":
            text = mcp_types.TextContent(type="text", text="three")
            return mcp_types.CallToolResult(content=[text], structured_content={"count": "three"})
        return await super()._handle_call_tool(ctx, params)


server = PagedServer("test-server", instructions="Test server: use echo to repeat text.")


@server.tool()
def echo(text: str) -> str:
    """Repeat the text back."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
def env(name: str) -> str:
    """The value of one environment variable of the server process, or <unset>."""
    return os.environ.get(name, "<unset>")


@server.tool()
def cwd() -> str:
    """The server's working directory."""
    return os.getcwd()


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so; records a cancellation in $TEST_SERVER_MARKER when it is cancelled."""
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        marker = os.environ.get("TEST_SERVER_MARKER")
        if marker:
            with open(marker, "a") as file:  # noqa: ASYNC230 - one line, while being cancelled
                file.write("cancelled\n")
        raise
    return f"slept {seconds}"


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    raise ToolError(message)


@server.tool()
def crash() -> str:
    """Kill the server process at once."""
    os._exit(3)


@server.tool()
def image() -> mcp_types.ImageContent:
    """A 1x1 PNG."""
    return mcp_types.ImageContent(type="image", data=base64.b64encode(PNG_1X1).decode(), mime_type="image/png")


@server.tool()
def stats() -> dict[str, int]:
    """Counts, as structured content."""
    return {"files": 3, "bytes": 1024}


@server.tool()
def mismatch() -> dict[str, int]:
    """Declares an integer count in its output schema, then sends a string (see PagedServer)."""
    return {"count": 3}


@server.tool()
def document() -> mcp_types.EmbeddedResource:
    """A text resource embedded in the result."""
    contents = mcp_types.TextResourceContents(uri="file:///notes.md", text="# Notes", mime_type="text/markdown")
    return mcp_types.EmbeddedResource(type="resource", resource=contents)


@server.tool()
def report() -> mcp_types.EmbeddedResource:
    """A binary resource (a small PDF-like blob) embedded in the result."""
    blob = base64.b64encode(b"%PDF-1.4 a tiny report").decode()
    contents = mcp_types.BlobResourceContents(uri="file:///reports/q3.pdf", blob=blob, mime_type="application/pdf")
    return mcp_types.EmbeddedResource(type="resource", resource=contents)


@server.tool()
def big(size: int) -> str:
    """A string of `size` characters."""
    return "x" * size


@server.tool(name="dotted.name-tool")
def dotted() -> str:
    """A tool whose name OpenAI-compatible APIs would refuse."""
    return "dotted ok"


@server.tool()
async def grow(name: str, ctx: Context) -> str:
    """Add a tool called `name` and tell the client that the tool list changed."""

    def added() -> str:
        return f"{name} works"

    server.add_tool(added, name=name, description=f"Added at run time: {name}")
    await ctx.notify_tools_changed()
    with contextlib.suppress(Exception):  # the 2026-07-28 era has no such notification; notify_tools_changed is it
        await ctx.session.send_tool_list_changed()
    return f"added {name}"


async def serve_stdio_handshake_era_only() -> None:
    """Serve stdio like a server that predates 2026-07-28: `server/discover` is an unknown method."""
    lowlevel = server._lowlevel_server
    async with stdio_server() as (read_stream, write_stream):
        send, receive = anyio.create_memory_object_stream[SessionMessage | Exception](16)

        async def refuse_discover() -> None:
            async with send:
                async for item in read_stream:
                    message = item.message if isinstance(item, SessionMessage) else None
                    if isinstance(message, mcp_types.JSONRPCRequest) and message.method == "server/discover":
                        error = mcp_types.ErrorData(code=mcp_types.METHOD_NOT_FOUND, message="Method not found")
                        reply = mcp_types.JSONRPCError(jsonrpc="2.0", id=message.id, error=error)
                        await write_stream.send(SessionMessage(reply))
                        continue
                    await send.send(item)

        async with lowlevel.lifespan(lowlevel) as state, anyio.create_task_group() as tasks:
            tasks.start_soon(refuse_discover)
            options = lowlevel.create_initialization_options()
            await serve_dual_era_loop(lowlevel, receive, write_stream, lifespan_state=state, init_options=options)
            tasks.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="stdio", choices=["stdio", "sse", "streamable-http"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--legacy", action="store_true", help="speak only the 2025-11-25 handshake protocol")
    parser.add_argument("--garbage", action="store_true", help="write non-JSON to stdout and exit")
    options = parser.parse_args()
    if options.garbage:
        print("this is not JSON-RPC", flush=True)
        print("Traceback: pretend crash", file=sys.stderr, flush=True)
        sys.exit(1)
    PagedServer.page_size = options.page_size
    if options.legacy:
        anyio.run(serve_stdio_handshake_era_only)
    elif options.transport == "stdio":
        server.run()
    else:
        server.run(options.transport, host="127.0.0.1", port=options.port)


if __name__ == "__main__":
    main()
