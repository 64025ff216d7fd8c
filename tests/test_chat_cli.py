"""`mcpbot chat --once` as a user runs it: a subprocess, a scripted model, our MCP test server, a SQLite file."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, peer_server
from tests.peers.openai_server import Call, Fail, Reply, ScriptedModelServer, tool_results


def chat_once(
    tmp_path: Path, model: ScriptedModelServer, text: str, chat_id: int = 7
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "mcp_servers.json"
    config.write_text(json.dumps({"mcpServers": {"ours": peer_server()}}))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MCP_SERVERS_CONFIG": str(config),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/data/mcpbot.db",
        "LLM_BASE_URL": model.base_url,
        "LLM_MODEL_NAME": "scripted",
        "LLM_RETRY_ATTEMPTS": "1",
        "LOG_LEVEL": "ERROR",
    }
    return subprocess.run(
        [sys.executable, "-m", "host", "chat", "--once", text, "--chat-id", str(chat_id)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def answer_with_tool_result(body: dict[str, Any]) -> Reply:
    return Reply(text=f"The server says {tool_results(body)[0]}.")


def test_a_tool_answer_on_stdout_and_the_history_on_the_next_run(tmp_path: Path) -> None:
    with ScriptedModelServer() as model:
        model.script(Reply(tool_calls=(Call("ours__add", {"a": 19, "b": 23}),)), answer_with_tool_result)
        first = chat_once(tmp_path, model, "What is 19 + 23?")
        assert first.returncode == 0, first.stderr
        assert first.stdout == "The server says 42.\n"
        assert "[ours: add {'a': 19, 'b': 23}]" in first.stderr and "[ours: add ok in" in first.stderr

        model.script(Reply(text="You asked about 19 + 23."))
        second = chat_once(tmp_path, model, "What did I ask?")
        assert second.stdout == "You asked about 19 + 23.\n"
        history = [(m["role"], m.get("content")) for m in model.bodies[-1]["messages"][1:]]
        assert history[0] == ("user", "What is 19 + 23?")
        assert ("tool", "42") in history and ("assistant", "The server says 42.") in history
        assert history[-1] == ("user", "What did I ask?")


def test_a_failed_turn_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    with ScriptedModelServer() as model:
        model.script(Fail(500, times=None))
        done = chat_once(tmp_path, model, "hello?")
    assert done.returncode == 1 and done.stdout == ""
    assert "HTTP 500" in done.stderr and "Your message is kept" in done.stderr
