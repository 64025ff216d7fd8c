"""One connection's traffic, seen between its transport and the SDK session: the end of the stream, tool
listings cut down to the tools the SDK accepts, tool results over the size caps refused before they become
models, and notes that explain a failure (non-JSON output, an HTTP error status).

Imports mcp_types only; nothing from the host.
"""

from typing import Any

import anyio
import mcp_types
from mcp.shared.message import SessionMessage
from mcp_types import methods
from pydantic import ValidationError

MAX_RESULT_ITEMS = 10_000  # content items in one tool result
MAX_RESULT_CHARS = 32 * 1024 * 1024  # characters of text and base64 in one tool result, structured content included
RESULT_TOO_LARGE = mcp_types.INTERNAL_ERROR
_MAX_PENDING = 1_000
_HANDSHAKE_VERSION = "2025-11-25"  # what the SDK assumes before a version is negotiated


class Wire:
    """Created per connection attempt; the transport reports every message through `sent` and `received`."""

    def __init__(self, ended: anyio.Event) -> None:
        self.ended = ended
        self.protocol_version: str | None = None  # set by the connection once negotiated
        self.skipped_tools: dict[str, str] = {}  # tool name -> why, since the connection last read it
        self.non_json: str | None = None  # the first line the server wrote that was not JSON-RPC
        self.http_failure: str | None = None  # the last HTTP error status, as "HTTP 401 from URL"
        self.exit_status: int | None = None  # a stdio server's, when it had exited before we stopped it
        self._methods: dict[Any, str] = {}

    def sent(self, item: SessionMessage) -> None:
        message = item.message
        if isinstance(message, mcp_types.JSONRPCRequest) and message.method in ("tools/list", "tools/call"):
            if len(self._methods) >= _MAX_PENDING:  # requests a server never answered (timed out, cancelled)
                del self._methods[next(iter(self._methods))]
            self._methods[message.id] = message.method

    def received(self, item: SessionMessage | Exception) -> SessionMessage | Exception:
        """The item the session should see instead of `item`."""
        if isinstance(item, Exception):
            if self.non_json is None and isinstance(item, ValidationError):
                self.non_json = _unreadable_line(item)
            return item
        message = item.message
        if not isinstance(message, mcp_types.JSONRPCResponse | mcp_types.JSONRPCError):
            return item
        method = self._methods.pop(message.id, None)
        if not isinstance(message, mcp_types.JSONRPCResponse):
            return item
        if method == "tools/list":
            return SessionMessage(message.model_copy(update={"result": self._usable_listing(message.result)}))
        if method == "tools/call" and (refusal := oversized(message.result)):
            error = mcp_types.ErrorData(code=RESULT_TOO_LARGE, message=refusal)
            return SessionMessage(mcp_types.JSONRPCError(jsonrpc="2.0", id=message.id, error=error))
        return item

    def _usable_listing(self, result: dict[str, Any]) -> dict[str, Any]:
        """The listing without the tools the SDK would refuse; the SDK validates a listing as a whole, so one
        bad tool would otherwise fail the whole server."""
        version = self.protocol_version or _HANDSHAKE_VERSION
        tools = result.get("tools")
        if not isinstance(tools, list) or _refusal(version, result) is None:
            return result
        if _refusal(version, {**result, "tools": []}) is not None:
            return result  # the listing itself is broken, not one of its tools: let the SDK say so
        kept = []
        for index, tool in enumerate(tools):
            reason = _refusal(version, {**result, "tools": [tool]})
            if reason is None:
                kept.append(tool)
            else:
                name = tool.get("name") if isinstance(tool, dict) else None
                self.skipped_tools[str(name) if name else f"#{index}"] = reason
        return {**result, "tools": kept}


def _refusal(version: str, listing: dict[str, Any]) -> str | None:
    """Why the SDK would refuse this tools/list result at `version`, or None."""
    try:
        methods.validate_server_result("tools/list", version, listing)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][2:] if part != "tools")  # inside the one tool
        return f"{where}: {first['msg']}" if where else first["msg"]
    except (KeyError, ValueError):  # a version or method this SDK has no rules for
        return None
    return None


def oversized(result: dict[str, Any]) -> str | None:
    """Why a tools/call result is too large to take in, or None."""
    content = result.get("content")
    if isinstance(content, list) and len(content) > MAX_RESULT_ITEMS:
        return f"the result has {len(content):,} content items; the limit is {MAX_RESULT_ITEMS:,}"
    if _chars_over(result, MAX_RESULT_CHARS):
        return f"the result holds more than {MAX_RESULT_CHARS:,} characters of text and data"
    return None


def _chars_over(value: Any, limit: int) -> bool:
    """Whether the strings inside `value` (keys included) add up to more than `limit` characters."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            total += len(item)
            if total > limit:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _unreadable_line(exc: ValidationError) -> str:
    """The start of a line that was not JSON-RPC, quoted, for a failure reason."""
    line = exc.errors()[0].get("input") if exc.errors() else None
    text = (line if isinstance(line, str) else str(exc)).strip()
    return repr(text[:80] + ("..." if len(text) > 80 else ""))
