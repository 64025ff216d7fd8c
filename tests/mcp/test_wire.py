"""The pieces that stand between a server and the SDK, without a process: the wire's checks on listings and
results, the stdio line reader's caps, and the texts that explain a failure."""

from typing import Any

import anyio
import mcp_types
import pytest
from mcp.shared.message import SessionMessage

from host.mcp import stdio, wire
from host.mcp.transports import http_status_text
from host.mcp.wire import Wire

pytestmark = pytest.mark.anyio


def answer(wire_: Wire, method: str, result: dict[str, Any], ident: int = 1) -> SessionMessage | Exception:
    wire_.sent(SessionMessage(mcp_types.JSONRPCRequest(jsonrpc="2.0", id=ident, method=method)))
    return wire_.received(SessionMessage(mcp_types.JSONRPCResponse(jsonrpc="2.0", id=ident, result=result)))


def test_a_listing_broken_as_a_whole_is_left_for_the_sdk_to_refuse() -> None:
    watched = Wire(anyio.Event())
    broken = {"tools": [{"name": "untyped", "inputSchema": {}}], "nextCursor": 5}
    item = answer(watched, "tools/list", broken)
    assert isinstance(item, SessionMessage) and isinstance(item.message, mcp_types.JSONRPCResponse)
    assert item.message.result == broken and watched.skipped_tools == {}


def test_a_result_over_the_character_cap_becomes_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "MAX_RESULT_CHARS", 100)
    watched = Wire(anyio.Event())
    item = answer(watched, "tools/call", {"content": [{"type": "text", "text": "x" * 101}]})
    assert isinstance(item, SessionMessage) and isinstance(item.message, mcp_types.JSONRPCError)
    assert item.message.error.message == "the result holds more than 100 characters of text and data"
    fine = answer(watched, "tools/call", {"content": [{"type": "text", "text": "x" * 50}]}, ident=2)
    assert isinstance(fine, SessionMessage) and isinstance(fine.message, mcp_types.JSONRPCResponse)


def test_unanswered_requests_are_forgotten_past_a_bound() -> None:
    watched = Wire(anyio.Event())
    for ident in range(5_000):
        watched.sent(SessionMessage(mcp_types.JSONRPCRequest(jsonrpc="2.0", id=ident, method="tools/call")))
    assert len(watched._methods) == 1_000


async def read_lines(*chunks: bytes) -> list[SessionMessage | Exception]:
    send, receive = anyio.create_memory_object_stream[bytes](len(chunks))
    for chunk in chunks:
        send.send_nowait(chunk)
    send.close()
    with anyio.fail_after(5), receive:
        return [item async for item in stdio._messages(receive)]  # type: ignore[arg-type]


async def test_the_line_reader_joins_chunks_skips_blank_lines_and_caps_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "MAX_LINE_BYTES", 1_000)
    monkeypatch.setattr(stdio, "MAX_LINE_OBJECTS", 3)
    ping = b'{"jsonrpc":"2.0","id":1,"result":{}}'
    items = await read_lines(
        ping[:10],
        ping[10:] + b"\n\n",
        b'{"jsonrpc":"2.0","result":{"text":"' + b"x" * 2_000,  # no id in its start: nothing to answer
        b'"},"id":2}\n' + b'{"jsonrpc":"2.0","id":3,"result":{"a":{"b":{"c":{}}}}}\n',
        b"not json\n" + ping,  # the last line needs no newline
    )
    assert [type(item).__name__ for item in items] == [
        "SessionMessage",
        "LineTooLarge",
        "SessionMessage",
        "ValidationError",
        "SessionMessage",
    ]
    assert "more than 1,000 bytes" in str(items[1])
    refused = items[2]
    assert isinstance(refused, SessionMessage) and isinstance(refused.message, mcp_types.JSONRPCError)
    assert refused.message.id == 3 and "more than 3 JSON objects" in refused.message.error.message
    watched = Wire(anyio.Event())
    assert watched.received(items[1]) is items[1] and watched.non_json is None  # refused, but not for its syntax
    assert watched.received(items[3]) is items[3] and watched.non_json == "'not json'"


def test_failure_texts() -> None:
    assert stdio.exit_text(0) == "it exited with status 0"
    assert stdio.exit_text(-9) == "it was killed by SIGKILL"
    assert stdio.exit_text(-200) == "it was killed by signal 200"
    assert http_status_text(403, "https://u:p@example.com/mcp?key=1") == (
        "HTTP 403 from https://example.com/mcp: the server refused these credentials"
    )
    assert http_status_text(404, "https://example.com/x").endswith("nothing there (check the server's 'url')")
    assert http_status_text(500, "https://example.com/x") == "HTTP 500 from https://example.com/x"
