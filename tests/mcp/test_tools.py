"""Tool results become host values the model and the front ends can use, whatever content a server sends."""

import base64

import mcp_types

from host.mcp.tools import BinaryPart, LinkPart, ResourceTextPart, TextPart, ToolResult, ToolSpec

PNG = b"\x89PNG\r\n\x1a\nfake"


def result(*content: object, structured: dict[str, object] | None = None, error: bool = False) -> ToolResult:
    raw = mcp_types.CallToolResult(content=list(content), structured_content=structured, is_error=error)  # type: ignore[arg-type]
    return ToolResult.from_mcp(raw)


def test_every_content_kind_is_kept_and_described() -> None:
    converted = result(
        mcp_types.TextContent(type="text", text="two files"),
        mcp_types.ImageContent(type="image", data=base64.b64encode(PNG).decode(), mime_type="image/png"),
        mcp_types.EmbeddedResource(
            type="resource",
            resource=mcp_types.TextResourceContents(uri="file:///notes.md", text="# Notes", mime_type="text/markdown"),
        ),
        mcp_types.EmbeddedResource(
            type="resource",
            resource=mcp_types.BlobResourceContents(uri="file:///a.bin", blob=base64.b64encode(b"\0\1").decode()),
        ),
        mcp_types.ResourceLink(type="resource_link", uri="file:///big.csv", name="big.csv", description="all rows"),
    )
    text, image, notes, blob, link = converted.parts
    assert text == TextPart("two files")
    assert image == BinaryPart("image", "image/png", len(PNG))
    assert notes == ResourceTextPart("file:///notes.md", "# Notes", "text/markdown")
    assert blob == BinaryPart("resource", "application/octet-stream", 2, "file:///a.bin")
    assert link == LinkPart("file:///big.csv", "big.csv", "all rows")
    assert converted.text().splitlines() == [
        "two files",
        "[image: image/png, 12 bytes]",
        "[resource file:///notes.md]",
        "# Notes",
        "[resource file:///a.bin: application/octet-stream, 2 bytes]",
        "[link big.csv file:///big.csv: all rows]",
    ]


def test_structured_content_is_shown_when_there_is_no_text() -> None:
    assert result(structured={"rows": 3}).text() == '{"rows": 3}'
    both = result(mcp_types.TextContent(type="text", text="3 rows"), structured={"rows": 3})
    assert both.text() == "3 rows" and both.structured == {"rows": 3}


def test_errors_stay_errors() -> None:
    failed = result(mcp_types.TextContent(type="text", text="no such file"), error=True)
    assert failed.is_error and failed.text() == "no such file"
    assert ToolResult.error("timed out").is_error


def test_tool_specs_keep_description_and_schema() -> None:
    tool = mcp_types.Tool(
        name="delete_file",
        title="Delete",
        input_schema={"type": "object", "properties": {"path": {"type": "string"}}},
        annotations=mcp_types.ToolAnnotations(read_only_hint=False, destructive_hint=True),
    )
    spec = ToolSpec.from_mcp("files", tool)
    assert (spec.server, spec.name, spec.description) == ("files", "delete_file", "Delete")
    assert spec.parameters == {"type": "object", "properties": {"path": {"type": "string"}}}
