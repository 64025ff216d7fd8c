"""`mcpbot servers` and `mcpbot call` as a user runs them: real subprocesses, real MCP servers."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, peer_server


def mcpbot(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "MCP_SERVERS_CONFIG": str(config), "LOG_LEVEL": "ERROR", "HOME": str(config.parent)}
    return subprocess.run(
        [sys.executable, "-m", "host", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_servers_json_reports_each_server_and_its_tools(write_config: Any) -> None:
    config = write_config(
        {"ours": peer_server(), "gone": {"command": "/nonexistent/server"}, "off": {"command": "x", "disabled": True}}
    )
    done = mcpbot(config, "servers", "--json")
    assert done.returncode == 1, done.stderr  # an enabled server failed
    servers = {server["name"]: server for server in json.loads(done.stdout)["servers"]}
    assert set(servers) == {"ours", "gone"}
    ours, gone = servers["ours"], servers["gone"]
    assert (ours["transport"], ours["status"], ours["error"]) == ("stdio", "connected", None)
    echo = next(tool for tool in ours["tools"] if tool["mcp_name"] == "echo")
    assert echo == {"name": "ours__echo", "mcp_name": "echo", "description": "Repeat the text back."}
    assert (gone["status"], gone["tools"]) == ("failed", [])
    assert "command not found" in gone["error"]


def test_servers_text_lists_status_and_tool_names(write_config: Any) -> None:
    config = write_config({"ours": peer_server()})
    done = mcpbot(config, "servers")
    assert done.returncode == 0
    assert "ours  [stdio]  connected" in done.stdout
    assert "ours__add  Add two integers." in done.stdout


def test_call_uses_the_chat_instance_of_a_per_chat_server(write_config: Any, tmp_path: Path) -> None:
    config = write_config({"mine": peer_server() | {"scope": "chat", "env": {"WS": "${CHAT_ID}"}}})
    done = mcpbot(config, "call", "mine", "env", '{"name": "WS"}', "--chat-id", "42")
    assert (done.returncode, done.stdout.strip()) == (0, "42")


def test_call_prints_the_result_and_exits_1_on_a_tool_error(write_config: Any) -> None:
    config = write_config({"ours": peer_server()})
    done = mcpbot(config, "call", "ours", "add", '{"a": 20, "b": 22}')
    assert (done.returncode, done.stdout.strip()) == (0, "42")
    failed = mcpbot(config, "call", "ours", "fail", '{"message": "no such table"}')
    assert failed.returncode == 1 and "no such table" in failed.stderr


def test_call_refuses_bad_arguments_and_unknown_servers(write_config: Any) -> None:
    config = write_config({"ours": peer_server(), "gone": {"command": "/nonexistent/server"}})
    assert "not valid JSON" in mcpbot(config, "call", "ours", "add", "{a: 1}").stderr
    unknown = mcpbot(config, "call", "nobody", "add")
    assert unknown.returncode == 2 and "no server named 'nobody'" in unknown.stderr
    dead = mcpbot(config, "call", "gone", "anything")
    assert dead.returncode == 1 and "command not found: /nonexistent/server" in dead.stderr


def test_a_malformed_config_stops_with_one_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "mcp_servers.json"
    config.write_text(json.dumps({"mcpServers": {"files": {"command": "srv", "timeout": "soon"}}}))
    done = mcpbot(config, "servers")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"configuration error: {config}: server 'files': field 'timeout': Input should be a valid number"
    )
