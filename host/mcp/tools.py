"""Host values for tools and their results, built from the SDK's types at this edge and nowhere else.

Imports mcp_types and host.mcp.schema; no other host module.
"""

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

import mcp_types

from host.mcp.schema import function_parameters

MAX_DESCRIPTION_CHARS = 2_000  # a tool's description is the server's text in every request: capped like its notes
# Base64 or a data: URI long enough to be a file, not a word: the model gets a note in its place.
_BINARY_TEXT = re.compile(r"(?:data:([\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,)?[A-Za-z0-9+/]{256,}={0,2}")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool as its server describes it; `parameters` is its input schema repaired for OpenAI-style APIs."""

    server: str
    name: str
    description: str
    parameters: dict[str, Any]

    @classmethod
    def from_mcp(cls, server: str, tool: mcp_types.Tool) -> "ToolSpec":
        """Raises TypeError or ValueError when the input schema cannot be made usable."""
        return cls(
            server=server,
            name=tool.name,
            description=_capped(tool.description or tool.title or "", MAX_DESCRIPTION_CHARS),
            parameters=function_parameters(dict(tool.input_schema)),
        )


MAX_MEDIA_BYTES = 20 * 1024 * 1024  # bytes of one image, audio clip or blob kept for front ends to show


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True)
class BinaryPart:
    """An image, an audio clip or a binary resource; text readers (the model, a terminal) see only its size, front
    ends that can show it get its bytes (`data`, kept up to MAX_MEDIA_BYTES)."""

    kind: str  # "image", "audio" or "resource"
    mime_type: str
    size: int  # bytes, once decoded (0 when the base64 is invalid)
    uri: str | None = None
    data: bytes = field(default=b"", repr=False, compare=False)  # empty when over MAX_MEDIA_BYTES or invalid


@dataclass(frozen=True, slots=True)
class ResourceTextPart:
    uri: str
    text: str
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class LinkPart:
    uri: str
    name: str
    description: str | None = None


Part = TextPart | BinaryPart | ResourceTextPart | LinkPart


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What one tool call gave back: content parts, optional structured content, and whether it failed."""

    parts: tuple[Part, ...]
    is_error: bool = False
    structured: dict[str, Any] | None = field(default=None)

    @classmethod
    def error(cls, message: str) -> "ToolResult":
        return cls(parts=(TextPart(message),), is_error=True)

    @classmethod
    def from_mcp(cls, result: mcp_types.CallToolResult) -> "ToolResult":
        return cls(
            parts=tuple(_part(block) for block in result.content),
            is_error=bool(result.is_error),
            structured=result.structured_content,
        )

    def text(self) -> str:
        """Everything a text-only reader (the model, a terminal) should see, uncapped; binary data that came as
        text (base64, data: URIs, in text or structured content) is replaced by a short note."""
        pieces = [_describe(part) for part in self.parts]
        if self.structured is not None and not any(isinstance(part, TextPart) for part in self.parts):
            pieces.append(json.dumps(self.structured, ensure_ascii=False, default=str))
        return _BINARY_TEXT.sub(_binary_note, "\n".join(pieces))


def _part(block: mcp_types.ContentBlock) -> Part:
    match block:
        case mcp_types.TextContent():
            return TextPart(block.text)
        case mcp_types.ImageContent() | mcp_types.AudioContent():
            data = _decoded(block.data)
            return BinaryPart(block.type, block.mime_type, len(data), data=_kept(data))
        case mcp_types.EmbeddedResource(resource=mcp_types.TextResourceContents() as contents):
            return ResourceTextPart(str(contents.uri), contents.text, contents.mime_type)
        case mcp_types.EmbeddedResource(resource=mcp_types.BlobResourceContents() as contents):
            mime = contents.mime_type or "application/octet-stream"
            data = _decoded(contents.blob)
            return BinaryPart("resource", mime, len(data), str(contents.uri), _kept(data))
        case mcp_types.ResourceLink():
            return LinkPart(str(block.uri), block.name, block.description)
    return TextPart(f"[unsupported content: {getattr(block, 'type', type(block).__name__)}]")


def _binary_note(match: re.Match[str]) -> str:
    """The note for one run of base64; a run that only looks like it (a long path of words) stays as it is."""
    run = match.group(0)
    if not run.startswith("data:"):
        mixed = any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)
        if not mixed or run.count("/") > len(run) // 16:
            return run
    size = len(run) * 3 // 4
    kind = match.group(1) or "binary data"
    return f"[{kind}, about {size:,} bytes of base64, left out]"


def _capped(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars].rstrip() + " [...]"


def _decoded(data: str) -> bytes:
    """The bytes of base64 text (the SDK holds the text already, within its result's size cap); none when invalid."""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError:
        return b""


def _kept(data: bytes) -> bytes:
    return data if len(data) <= MAX_MEDIA_BYTES else b""


def _describe(part: Part) -> str:
    match part:
        case TextPart():
            return part.text
        case ResourceTextPart():
            return f"[resource {part.uri}]\n{part.text}"
        case LinkPart():
            about = f": {part.description}" if part.description else ""
            return f"[link {part.name} {part.uri}{about}]"
        case BinaryPart():
            where = f" {part.uri}" if part.uri else ""
            return f"[{part.kind}{where}: {part.mime_type}, {part.size} bytes]"
