"""Per-chat servers start on a chat's first tool call, not when it talks: one listing instance gives every chat
its catalogue. Real `mcpbot-filesystem` processes, counted in /proc."""

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from host.errors import ServerUnavailable
from host.mcp.config import load_servers
from host.mcp.registry import Registry
from tests.conftest import peer_server

pytestmark = pytest.mark.anyio


def child_processes() -> list[int]:
    """Processes whose parent is this test process."""
    own = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2 :].split()[1] == own:
            found.append(int(entry.name))
    return found


def filesystem_config(write_config: Any, workspaces: Path) -> Path:
    entry = {"command": "mcpbot-filesystem", "args": ["--root", f"{workspaces}/${{CHAT_ID}}"], "scope": "chat"}
    return write_config({"files": entry})


async def test_fifty_talking_chats_share_one_listing_process_and_a_call_starts_its_chats_own(
    write_config: Any, tmp_path: Path
) -> None:
    workspaces = tmp_path / "workspaces"
    with anyio.fail_after(30):
        async with Registry(load_servers(filesystem_config(write_config, workspaces))) as registry:
            listing = child_processes()
            assert len(listing) == 1
            for chat_id in range(1, 51):  # what the engine asks for at the start of every turn
                names = {entry.name for entry in await registry.catalogue(chat_id)}
                assert {"files__read_file", "files__write_file"} <= names
            assert child_processes() == listing
            assert registry.running_instances("files") == 0

            written = await registry.call("files__write_file", {"file_path": "notes.txt", "content": "seven"}, 7)
            assert not written.is_error, written.text()
            assert (workspaces / "7" / "notes.txt").read_text() == "seven"
            assert len(child_processes()) == 2
            assert registry.running_instances("files") == 1
            read = await registry.call("files__read_file", {"file_path": "notes.txt"}, 7)
            assert read.text() == "seven"
            assert len(child_processes()) == 2  # the chat's instance is reused

            other = await registry.call("files__read_file", {"file_path": "notes.txt"}, 8)
            assert other.is_error  # chat 8's own workspace does not have chat 7's file
            assert sorted(path.name for path in workspaces.iterdir()) == ["0", "7", "8"]
            [talker] = [c for c in await registry.connections(9) if c.name == "files"]
            assert talker is next(c for c in await registry.connections(0) if c.name == "files")


async def test_a_chat_whose_own_instance_cannot_start_gets_the_reason_and_others_go_on(
    write_config: Any, tmp_path: Path
) -> None:
    workspaces = tmp_path / "workspaces"
    workspaces.mkdir()
    (workspaces / "7").write_text("a file where chat 7's workspace should be")
    with anyio.fail_after(30):
        async with Registry(load_servers(filesystem_config(write_config, workspaces))) as registry:
            with pytest.raises(ServerUnavailable, match="is not a directory"):
                await registry.call("files__list_directory", {}, 7)
            assert [entry.name for entry in await registry.catalogue(7)]  # the catalogue stays
            listed = await registry.call("files__list_directory", {}, 8)
            assert not listed.is_error, listed.text()


async def test_instructions_and_list_changes_come_from_the_listing_instance(write_config: Any) -> None:
    config = write_config({"mine": peer_server() | {"scope": "chat"}})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            assert (await registry.catalogue(5)).instructions == {"mine": "Test server: use echo to repeat text."}
            assert len(child_processes()) == 1
            await registry.call("mine__grow", {"name": "everyone"}, 0)  # chat 0's instance is the listing instance
            [listing] = await registry.connections(5)
            await listing.wait_until(lambda c: any(spec.name == "everyone" for spec in c.tools))
            assert "mine__everyone" in {entry.name for entry in await registry.catalogue(5)}

            await registry.call("mine__grow", {"name": "only_five"}, 5)
            assert len(child_processes()) == 2
            [own] = await registry.connections(5)
            assert own is not listing
            await own.wait_until(lambda c: any(spec.name == "only_five" for spec in c.tools))
            assert "mine__only_five" not in {entry.name for entry in await registry.catalogue(5)}
