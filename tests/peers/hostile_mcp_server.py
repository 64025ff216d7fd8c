"""An MCP server that misbehaves the way third-party servers were seen to, on raw JSON-RPC so that it can send
what the SDK's own server never would: -32000 tool errors, invalid UTF-8, huge results and stderr lines,
schemas the SDK refuses, base64 everywhere. Speaks the 2025-11-25 handshake over stdio or Streamable HTTP
(with a session; `--record FILE` notes each DELETE)."""

import argparse
import base64
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

PROTOCOL = "2025-11-25"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40).decode()  # about 13,700 characters


def tool(name: str, description: str, properties: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    schema = {"type": "object", "properties": properties or {}}
    return {"name": name, "description": description, "inputSchema": schema, **extra}


def tools(options: argparse.Namespace) -> list[dict[str, Any]]:
    listed = [
        tool("echo", "Repeat the text back.", {"text": {"type": "string"}}),
        tool("server_error", "Answer with JSON-RPC error -32000 and stay up.", {"message": {"type": "string"}}),
        tool("bad_utf8", "A result whose text holds bytes that are not UTF-8."),
        tool("garbage_line", "Write a line of non-UTF-8 non-JSON to stdout, then answer."),
        tool("items", "A result of `count` text items.", {"count": {"type": "integer"}}),
        tool(
            "stderr_line", "Write one stderr line of `megabytes` MB, then answer.", {"megabytes": {"type": "integer"}}
        ),
        tool("image_echo", "An image, its base64 repeated in structuredContent, also as a data URI."),
        tool("env", "The values of the named environment variables.", {"names": {"type": "array"}}),
        tool("pid", "The server's process id."),
        tool("http_error", "Over HTTP: answered with status 503."),
        tool(
            "log_flood",
            "Send `count` log messages (notifications/message) at `level` with `data`, then answer.",
            {"count": {"type": "integer"}, "level": {"type": "string"}, "data": {}},
        ),
    ]
    if options.untyped_tool:
        listed.insert(
            1, {"name": "untyped", "description": "No type in its schema.", "inputSchema": {"properties": {}}}
        )
    if options.task_tool:
        listed.append(tool("background_job", "Runs only as a task.", execution={"taskSupport": "required"}))
    if options.long_description:
        listed.append(tool("chatty", options.long_description))
    return listed


def answer(options: argparse.Namespace, message: dict[str, Any]) -> Iterator[bytes]:
    """The bytes to send for one incoming message (nothing for a notification)."""
    method, ident, params = message.get("method"), message.get("id"), message.get("params") or {}
    if ident is None:
        return
    head = b'{"jsonrpc":"2.0","id":' + json.dumps(ident).encode()

    def result(value: Any) -> bytes:
        return head + b',"result":' + json.dumps(value).encode() + b"}\n"

    def error(code: int, text: str) -> bytes:
        return head + b',"error":' + json.dumps({"code": code, "message": text}).encode() + b"}\n"

    if method == "initialize":
        info = {"name": "hostile", "version": "0"}
        initialized: dict[str, Any] = {"protocolVersion": PROTOCOL, "capabilities": {"tools": {}}, "serverInfo": info}
        if options.instructions:
            initialized["instructions"] = options.instructions
        yield result(initialized)
    elif method == "ping":
        yield result({})
    elif method == "tools/list":
        yield result({"tools": tools(options)})
    elif method == "tools/call":
        yield from call(params.get("name"), params.get("arguments") or {}, result, error, head)
    else:
        yield error(-32601, "Method not found")


def text_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}]}


def call(name: Any, arguments: dict[str, Any], result: Any, error: Any, head: bytes) -> Iterator[bytes]:
    if name == "echo":
        yield result(text_result(str(arguments.get("text", ""))))
    elif name == "server_error":
        yield error(-32000, str(arguments.get("message", "Connection closed")))
    elif name == "bad_utf8":
        yield head + b',"result":{"content":[{"type":"text","text":"caf\xe9 \xff\xfe ok"}]}}\n'
    elif name == "garbage_line":
        yield b"\xff\xfe\xfd not json at all \xc3\x28\n"
        yield result(text_result("after the garbage"))
    elif name == "items":
        count = int(arguments.get("count", 1))
        yield head + b',"result":{"content":['
        chunk = 10_000
        for start in range(0, count, chunk):
            items = (b'{"type":"text","text":"item %d"}' % index for index in range(start, min(count, start + chunk)))
            yield (b"," if start else b"") + b",".join(items)
        yield b"]}}\n"
    elif name == "stderr_line":
        block = b"e" * (1 << 20)
        for _ in range(int(arguments.get("megabytes", 1))):
            sys.stderr.buffer.write(block)
        sys.stderr.buffer.write(b"\nafter the long line\n")
        sys.stderr.buffer.flush()
        yield result(text_result("wrote it"))
    elif name == "image_echo":
        content = [{"type": "image", "data": PNG, "mimeType": "image/png"}]
        structured = {"image": PNG, "preview": f"data:image/png;base64,{PNG}", "caption": "a chart"}
        yield result({"content": content, "structuredContent": structured})
    elif name == "env":
        names = arguments.get("names") or []
        yield result(text_result(json.dumps({n: os.environ.get(n) for n in names})))
    elif name == "pid":
        yield result(text_result(str(os.getpid())))
    elif name == "log_flood":
        params = {"level": arguments.get("level", "info"), "logger": "flood", "data": arguments.get("data")}
        line = json.dumps({"jsonrpc": "2.0", "method": "notifications/message", "params": params}).encode() + b"\n"
        for _ in range(int(arguments.get("count", 1))):
            yield line
        yield result(text_result("logged"))
    else:
        yield error(-32602, f"Unknown tool: {name}")


def serve_stdio(options: argparse.Namespace) -> None:
    if options.exit is not None:
        sys.exit(options.exit)
    if options.non_json:  # a program that is not an MCP server: a banner, then it ignores what it is sent
        sys.stdout.write("Starting hostile server v0 on stdio...\n")
        sys.stdout.flush()
        for _line in sys.stdin.buffer:
            pass
        return
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            message = json.loads(line)
        except ValueError:
            continue
        for piece in answer(options, message):
            out.write(piece)
        out.flush()
    if options.linger:  # stdin closed: a polite server would exit now
        time.sleep(3600)


def serve_http(options: argparse.Namespace) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    sessions: set[str] = set()

    async def endpoint(request: Request) -> Response:
        if options.status:
            headers = {"WWW-Authenticate": 'Bearer realm="hostile"'} if options.status == 401 else {}
            return Response("go away", status_code=options.status, headers=headers)
        if request.method == "DELETE":
            session = request.headers.get("mcp-session-id", "")
            if options.record:
                with open(options.record, "a") as file:  # noqa: ASYNC230 - one line in a test peer
                    file.write(f"DELETE {session} {'known' if session in sessions else 'unknown'}\n")
            sessions.discard(session)
            return Response(status_code=200)
        if request.method == "GET":
            return Response(status_code=405)
        message = json.loads(await request.body())
        if (message.get("params") or {}).get("name") == "http_error":
            return Response("overloaded", status_code=503)
        headers = {}
        if message.get("method") == "initialize":
            session = uuid.uuid4().hex
            sessions.add(session)
            headers["mcp-session-id"] = session
        body = b"".join(answer(options, message))
        if not body:
            return Response(status_code=202)
        return Response(body, media_type="application/json", headers=headers)

    app = Starlette(routes=[Route("/mcp", endpoint, methods=["GET", "POST", "DELETE"])])
    uvicorn.run(app, host="127.0.0.1", port=options.port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http"])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--untyped-tool", action="store_true", help="list one tool with no type in its schema")
    parser.add_argument("--task-tool", action="store_true", help="list one tool that requires task augmentation")
    parser.add_argument("--long-description", help="list a tool 'chatty' with this description")
    parser.add_argument("--instructions", help="the server's instructions")
    parser.add_argument("--exit", type=int, help="exit at once with this status, writing nothing")
    parser.add_argument("--non-json", action="store_true", help="greet on stdout before speaking JSON-RPC")
    parser.add_argument("--linger", action="store_true", help="stay after stdin closes, until SIGTERM")
    parser.add_argument("--record", help="HTTP: append a line to this file for each DELETE")
    parser.add_argument("--status", type=int, help="HTTP: answer every request with this status")
    options = parser.parse_args()
    if options.transport == "stdio":
        serve_stdio(options)
    else:
        serve_http(options)


if __name__ == "__main__":
    main()
