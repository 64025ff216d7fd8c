"""The template server works over stdio, Streamable HTTP and SSE, under MCP Inspector, and when copied."""

import shutil
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.conftest import ROOT
from tests.servers.conftest import inspector, stdio_params

pytestmark = pytest.mark.anyio


async def exercise(client: Client) -> None:
    """Everything the template offers: its tool, its resource and its prompt."""
    tools = await client.list_tools()
    [tool] = tools.tools
    assert tool.name == "count_words" and tool.annotations and tool.annotations.read_only_hint
    counted = await client.call_tool("count_words", {"text": "one two\nthree"})
    assert counted.structured_content == {"words": 3, "lines": 2, "characters": 13}
    about = await client.read_resource("template://about")
    assert "one tool, one resource, one prompt" in about.contents[0].text  # type: ignore[union-attr]
    prompt = await client.get_prompt("summarize", {"text": "Long story."})
    assert "Long story." in prompt.messages[0].content.text  # type: ignore[union-attr]
    assert "count_words" in (client.instructions or "")


async def test_over_stdio() -> None:
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.template")) as client:
            await exercise(client)


async def test_over_streamable_http(http_server: Any) -> None:
    url = http_server("servers.template")
    with anyio.fail_after(30):
        async with Client(url) as client:
            await exercise(client)


async def test_over_sse(http_server: Any) -> None:
    url = http_server("servers.template", transport="sse")
    with anyio.fail_after(30):
        async with Client(sse_client(url)) as client:
            await exercise(client)


def test_under_mcp_inspector(tmp_path: Path) -> None:
    command = [stdio_params("x").command, "-m", "servers.template"]
    listed = inspector(tmp_path, *command, "--method", "tools/list")
    assert [tool["name"] for tool in listed["tools"]] == ["count_words"]
    called = inspector(
        tmp_path, *command, "--method", "tools/call", "--tool-name", "count_words", "--tool-arg", "text=a b c"
    )
    assert called["structuredContent"] == {"words": 3, "lines": 1, "characters": 5}


async def test_a_renamed_copy_is_a_working_server() -> None:
    name = f"copy_{uuid.uuid4().hex[:8]}"
    copy = ROOT / "servers" / name
    shutil.copytree(ROOT / "servers" / "template", copy, ignore=shutil.ignore_patterns("__pycache__"))
    try:
        with anyio.fail_after(30):
            async with Client(stdio_params(f"servers.{name}")) as client:
                await exercise(client)
    finally:
        shutil.rmtree(copy)
