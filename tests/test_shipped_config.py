"""The shipped mcp_servers.json run as an operator would under systemd: `.venv/bin/mcpbot` from a folder that is
not the repository, no activated venv, no `python` on PATH. Our servers come from the bot's own environment and
files land in DATA_DIR."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.peers.openai_server import Call, Reply, ScriptedModelServer

MCPBOT = Path(sys.executable).parent / "mcpbot"


def mcpbot(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`<repo>/.venv/bin/mcpbot ARGS` in `cwd`, with a PATH that holds nothing at all."""
    nothing = cwd.parent / "empty-bin"
    nothing.mkdir(exist_ok=True)
    env = {
        "PATH": str(nothing),
        "HOME": str(cwd),
        "MCP_SERVERS_CONFIG": str(ROOT / "mcp_servers.json"),
        "LOG_LEVEL": "ERROR",
        **settings,
    }
    return subprocess.run([str(MCPBOT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def elsewhere(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_both_servers_connect_and_list_their_tools_from_another_folder(tmp_path: Path) -> None:
    cwd = elsewhere(tmp_path)
    done = mcpbot(cwd, "servers", "--json")
    assert done.returncode == 0, done.stderr
    servers = {server["name"]: server for server in json.loads(done.stdout)["servers"]}
    assert {name: (server["status"], server["error"]) for name, server in servers.items()} == {
        "filesystem": ("connected", None),
        "database": ("connected", None),
    }
    tools = {tool["name"] for server in servers.values() for tool in server["tools"]}
    assert {"filesystem__read_file", "filesystem__write_file", "database__query_database"} <= tools
    assert (cwd / "data" / "workspaces" / "0").is_dir()  # DATA_DIR's default is relative to the working directory


def test_a_written_file_lands_in_the_data_folder_not_the_working_directory(tmp_path: Path) -> None:
    cwd, data = elsewhere(tmp_path), tmp_path / "state"
    arguments = json.dumps({"file_path": "notes.txt", "content": "kept"})
    done = mcpbot(cwd, "call", "filesystem", "write_file", arguments, "--chat-id", "42", DATA_DIR=str(data))
    assert done.returncode == 0, done.stderr
    assert (data / "workspaces" / "42" / "notes.txt").read_text() == "kept"
    assert list(cwd.iterdir()) == []


def test_chat_once_uses_the_chats_own_workspace_and_the_data_folders_database(tmp_path: Path) -> None:
    cwd, data = elsewhere(tmp_path), tmp_path / "state"
    with ScriptedModelServer() as model:
        write = Call("filesystem__write_file", {"file_path": "todo.txt", "content": "buy milk"})
        model.script(Reply(tool_calls=(write,)), Reply(text="Saved."))
        done = mcpbot(
            cwd,
            *("chat", "--once", "Note: buy milk", "--chat-id", "7"),
            DATA_DIR=str(data),
            LLM_BASE_URL=model.base_url,
            LLM_MODEL_NAME="scripted",
            LLM_RETRY_ATTEMPTS="1",
        )
    assert (done.returncode, done.stdout) == (0, "Saved.\n"), done.stderr
    assert (data / "workspaces" / "7" / "todo.txt").read_text() == "buy milk"
    assert (data / "mcpbot.db").is_file()
    assert list(cwd.iterdir()) == []
