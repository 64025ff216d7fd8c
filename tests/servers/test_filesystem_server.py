"""The filesystem server as hosts see it: over stdio and Streamable HTTP through the SDK client, under MCP
Inspector's CLI, with truthful tool annotations, its options, and the allowed cases working end to end.
"""

import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from servers.filesystem.__main__ import ROOT_VARIABLE, parse_options
from tests.servers.conftest import inspector, stdio_params
from tests.servers.test_filesystem_workspace import make_names_that_are_not_utf8

pytestmark = pytest.mark.anyio

TOOLS = {
    # name: (read_only, destructive, idempotent)
    "read_file": (True, False, True),
    "list_directory": (True, False, True),
    "search_files": (True, False, True),
    "file_info": (True, False, True),
    "write_file": (False, True, True),
    "move_file": (False, True, False),
    "delete_file": (False, True, True),
    "delete_directory": (False, True, True),
    "create_directory": (False, False, True),
}


def text_of(result: Any) -> str:
    assert not result.is_error, result.content
    return "\n".join(getattr(part, "text", "") for part in result.content)


async def call(client: Client, tool: str, **arguments: str) -> str:
    with anyio.fail_after(10):
        return text_of(await client.call_tool(tool, arguments))


async def exercise(client: Client, root: Path) -> None:
    """Every tool once, and the annotations and instructions a host sees."""
    with anyio.fail_after(10):
        listed = await client.list_tools()
    annotations = {tool.name: tool.annotations for tool in listed.tools}
    assert set(annotations) == set(TOOLS)
    for name, (read_only, destructive, idempotent) in TOOLS.items():
        hints = annotations[name]
        assert hints is not None
        assert (hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint) == (
            read_only,
            destructive,
            idempotent,
        ), name
        assert hints.open_world_hint is False
    assert "relative to the workspace root" in (client.instructions or "")

    assert await call(client, "write_file", file_path="notes/ünï.md", content="# héllo") == (
        "wrote 8 bytes to notes/ünï.md"
    )
    assert (root / "notes" / "ünï.md").read_text() == "# héllo"
    assert await call(client, "read_file", file_path="notes/ünï.md") == "# héllo"
    assert await call(client, "list_directory", directory="notes") == "ünï.md (8 bytes)"
    assert await call(client, "search_files", pattern="*.md") == "notes/ünï.md"
    assert "type: file" in await call(client, "file_info", file_path="notes/ünï.md")
    assert await call(client, "create_directory", directory="archive/2026") == "directory archive/2026 created"
    await call(client, "move_file", source="notes/ünï.md", destination="archive/2026/ünï.md")
    assert await call(client, "delete_file", file_path="archive/2026/ünï.md") == "deleted archive/2026/ünï.md"
    assert await call(client, "delete_directory", directory="archive/2026") == "deleted directory archive/2026"
    with anyio.fail_after(10):
        refused = await client.call_tool("read_file", {"file_path": "../outside.txt"})
    assert refused.is_error and "'..'" in refused.content[0].text  # type: ignore[union-attr]


async def test_over_stdio(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.filesystem", "--root", str(root))) as client:
            await exercise(client, root)
            make_names_that_are_not_utf8(str(root))  # the server once crashed writing such a name to stdout
            assert "bad\ufffdname.txt [name is not valid UTF-8] (0 bytes)" in await call(client, "list_directory")
            assert "bad\ufffdname.txt [name is not valid UTF-8]" in await call(client, "search_files", pattern="name")
            assert await call(client, "list_directory", directory="to-dir") == "one.txt (0 bytes)"


async def test_over_streamable_http(tmp_path: Path, http_server: Any) -> None:
    root = tmp_path / "workspace"
    url = http_server("servers.filesystem", "--root", str(root))
    with anyio.fail_after(30):
        async with Client(url) as client:
            await exercise(client, root)


def test_under_mcp_inspector(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "hello.txt").write_text("hello from the workspace")
    command = [stdio_params("x").command, "-m", "servers.filesystem", "--root", str(root)]
    listed = inspector(tmp_path, *command, "--method", "tools/list")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    assert set(tools) == set(TOOLS)
    assert tools["read_file"]["annotations"]["readOnlyHint"] is True
    assert tools["delete_file"]["annotations"]["destructiveHint"] is True
    called = inspector(
        tmp_path, *command, "--method", "tools/call", "--tool-name", "read_file", "--tool-arg", "file_path=hello.txt"
    )
    assert called["content"][0]["text"] == "hello from the workspace"


async def test_allowed_cases_end_to_end(tmp_path: Path) -> None:
    """A root reached through a symlink, a symlink that stays inside, binary files, listing truncation."""
    real = tmp_path / "real-workspace"
    (real / "docs").mkdir(parents=True)
    (real / "docs" / "guide.md").write_text("guide")
    (real / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    for index in range(5):
        (real / f"file{index}.txt").write_text("")
    os.symlink("docs/guide.md", real / "guide_link")
    os.symlink("docs", real / "docs_link")
    os.symlink(real, tmp_path / "workspace-link")
    args = ("--root", str(tmp_path / "workspace-link"), "--max-list-entries", "3")
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.filesystem", *args)) as client:
            assert await call(client, "read_file", file_path="guide_link") == "guide"
            assert await call(client, "read_file", file_path="docs_link/guide.md") == "guide"
            assert "target: docs (directory)" in await call(client, "file_info", file_path="docs_link")
            binary = await call(client, "read_file", file_path="logo.png")
            assert binary == "[binary file 'logo.png', 9 bytes, type guessed from extension: image/png; not shown]"
            listing = (await call(client, "list_directory")).splitlines()
            assert len(listing) == 4 and listing[-1].startswith("[truncated: showing 3 entries")
            await call(client, "write_file", file_path="docs_link/new.md", content="via an inside link")
    assert (real / "docs" / "new.md").read_text() == "via an inside link"
    assert not [name for name in os.listdir(real / "docs") if name.startswith(".")]  # no temporary left


def test_root_option_defaults_to_the_environment_then_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ROOT_VARIABLE, raising=False)
    options = parse_options([])
    assert options.root == "./workspace" and (tmp_path / "workspace").is_dir()
    assert (options.transport, options.max_read_bytes, options.max_list_entries) == ("stdio", 1024 * 1024, 1000)
    monkeypatch.setenv(ROOT_VARIABLE, str(tmp_path / "from-env" / "nested"))
    assert parse_options([]).root == str(tmp_path / "from-env" / "nested")
    assert (tmp_path / "from-env" / "nested").is_dir()
    assert parse_options(["--root", "explicit"]).root == "explicit"


def test_a_root_that_is_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        parse_options(["--root", str(tmp_path / "file")])
    assert "not a directory" in capsys.readouterr().err


async def test_file_info_on_a_symlink_to_the_workspace_root(tmp_path: Path) -> None:
    """Once an IndexError: the root has no parent directory to describe it from."""
    root = tmp_path / "workspace"
    (root / "sub").mkdir(parents=True)
    os.symlink(".", root / "here")
    os.symlink("..", root / "sub" / "up")
    os.symlink(root, root / "absolute")
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.filesystem", "--root", str(root))) as client:
            for link in ("here", "sub/up", "absolute"):
                info = await call(client, "file_info", file_path=link)
                assert "type: symlink" in info and "target: . (the workspace root, directory)" in info, info
            listing = await call(client, "list_directory", directory="sub/up")
            assert listing == "sub/\nabsolute [symlink]\nhere [symlink]"
