"""Registry.reload against real server subprocesses: a changed server restarts, a new one starts, a removed one
stops (its process is gone), and the untouched ones keep their processes and their chats' instances."""

from pathlib import Path
from typing import Any

import anyio
import pytest

from host.errors import ServerUnavailable
from host.mcp.config import load_servers
from host.mcp.registry import Registry, Reloaded
from tests.conftest import peer_server, process_alive

pytestmark = pytest.mark.anyio


async def pid_of(registry: Registry, server: str, chat_id: int = 0) -> int:
    return int((await registry.call_server_tool(server, "pid", {}, chat_id)).text())


async def test_one_changed_server_restarts_and_the_others_keep_running(write_config: Any, tmp_path: Path) -> None:
    workspace = str(tmp_path / "chats" / "${CHAT_ID}")
    per_chat = {**peer_server(), "scope": "chat", "cwd": workspace}
    servers = {"kept": peer_server(), "changed": peer_server(), "removed": peer_server(), "chats": per_chat}
    config = write_config(servers)
    with anyio.fail_after(60):
        async with Registry(load_servers(config)) as registry:
            before = {name: await pid_of(registry, name) for name in servers}
            chat_instance = await pid_of(registry, "chats", chat_id=5)
            servers["changed"] = {**peer_server(), "env": {"FLAVOUR": "new"}}
            del servers["removed"]
            servers["added"] = peer_server()
            reloaded = await registry.reload(load_servers(write_config(servers)))
            after = {name: await pid_of(registry, name) for name in servers}
            assert await pid_of(registry, "chats", chat_id=5) == chat_instance  # a chat's own instance kept too
            assert (await registry.call("changed__env", {"name": "FLAVOUR"})).text() == "new"
            with pytest.raises(ServerUnavailable, match="removed"):
                await registry.call_server_tool("removed", "pid", {})
            names = {entry.name for entry in await registry.catalogue()}
    assert reloaded == Reloaded(
        started=("added",), restarted=("changed",), stopped=("removed",), kept=("kept", "chats")
    )
    assert reloaded.summary() == "started added; restarted changed; stopped removed; 2 kept running"
    assert after["kept"] == before["kept"] and after["chats"] == before["chats"]
    assert after["changed"] != before["changed"] and not process_alive(before["changed"])
    assert not process_alive(before["removed"])
    assert "added__echo" in names and not [name for name in names if name.startswith("removed__")]


async def test_a_reload_without_changes_touches_nothing(write_config: Any) -> None:
    config = write_config({"one": peer_server()})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            before = await pid_of(registry, "one")
            reloaded = await registry.reload(load_servers(config))
            assert await pid_of(registry, "one") == before
    assert reloaded == Reloaded(kept=("one",)) and reloaded.summary() == "no server changed; 1 kept running"
