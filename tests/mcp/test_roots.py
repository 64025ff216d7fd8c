"""MCP roots against the npm reference filesystem server, which works only in the roots its client offers when it
is started without folders: a per-chat server is offered its chat's own folder, a shared one the folders its
`roots` names (relative to mcp_servers.json's folder)."""

from pathlib import Path
from typing import Any

import anyio
import pytest

from host.mcp.config import load_servers
from host.mcp.registry import Registry
from tests.conftest import npm_server

pytestmark = pytest.mark.anyio


async def allowed(registry: Registry, server: str, chat_id: int) -> str:
    """The server's allowed folders, once it has them: it asks for the roots after the handshake, on its own time."""
    while True:
        text = (await registry.call_server_tool(server, "list_allowed_directories", {}, chat_id=chat_id)).text()
        if text.strip() != "Allowed directories:":
            return text
        await anyio.sleep(0.05)  # the server's own request for the roots is still on its way: ask again


async def test_a_per_chat_server_gets_its_chats_folder_and_a_shared_one_its_roots(
    write_config: Any, tmp_path: Path
) -> None:
    (tmp_path / "shared").mkdir()
    config = write_config(
        {
            "mine": {**npm_server("mcp-server-filesystem"), "scope": "chat", "cwd": f"{tmp_path}/chats/${{CHAT_ID}}"},
            "team": {**npm_server("mcp-server-filesystem"), "roots": ["shared"]},
        }
    )
    with anyio.fail_after(60):
        async with Registry(load_servers(config)) as registry:
            mine = await allowed(registry, "mine", 5)
            team = await allowed(registry, "team", 0)
    assert str(tmp_path / "chats" / "5") in mine and "chats/0" not in mine
    assert str(tmp_path / "shared") in team
