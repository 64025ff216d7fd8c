"""`mcpbot chat` as a user runs it, with `--once` and in a terminal: a subprocess, a scripted model, our MCP test
server, a SQLite file."""

import fcntl
import json
import os
import select
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, peer_server
from tests.peers.openai_server import Call, Fail, Hang, Reply, ScriptedModelServer, tool_results


def chat_env(
    tmp_path: Path, model: ScriptedModelServer, servers: dict[str, Any] | None = None, **settings: str
) -> dict[str, str]:
    """What `mcpbot chat` runs with in these tests: a server list and a SQLite file of the test's own, the scripted
    model, one attempt per model call; `settings` add to it or replace it."""
    config = tmp_path / "mcp_servers.json"
    config.write_text(json.dumps({"mcpServers": {"ours": peer_server()} if servers is None else servers}))
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MCP_SERVERS_CONFIG": str(config),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/data/mcpbot.db",
        "LLM_BASE_URL": model.base_url,
        "LLM_MODEL_NAME": "scripted",
        "LLM_RETRY_ATTEMPTS": "1",
        **settings,
    }


def chat_once(
    tmp_path: Path, model: ScriptedModelServer, text: str, chat_id: int = 7
) -> subprocess.CompletedProcess[str]:
    env = chat_env(tmp_path, model, LOG_LEVEL="ERROR")
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


class Terminal:
    """`mcpbot chat` on a pseudo-terminal, as a person runs it: the terminal is its controlling terminal, so that
    Ctrl-C (\\x03) becomes SIGINT and Ctrl-D (\\x04) the end of input, as the line discipline makes them."""

    def __init__(self, tmp_path: Path, model: ScriptedModelServer) -> None:
        env = chat_env(tmp_path, model, TERM="dumb")  # no LOG_LEVEL: the chat decides what a terminal gets
        self._master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "host", "chat", "--chat-id", "5"],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.output = ""

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def wait_for(self, text: str, *, after: int = 0, within: float = 30.0) -> int:
        """Read until `text` appears past offset `after`; where it ends."""
        deadline = time.monotonic() + within
        while (found := self.output.find(text, after)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} did not appear; the terminal shows:\n{self.output[after:]}"
            ready, _, _ = select.select([self._master], [], [], left)
            if ready:
                try:
                    self.output += os.read(self._master, 65536).decode(errors="replace")
                except OSError:  # the program ended and closed the terminal
                    assert text in self.output[after:], f"{text!r} never appeared:\n{self.output[after:]}"
        return found + len(text)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._master)


def test_in_a_terminal_ctrl_c_stops_the_answer_and_ctrl_d_ends_the_chat(tmp_path: Path) -> None:
    with ScriptedModelServer() as model:
        asked = threading.Event()

        def hang_once_asked(_body: dict[str, Any]) -> Hang:
            asked.set()
            return Hang()

        model.script(hang_once_asked, Reply(text="Here is the second answer."))
        terminal = Terminal(tmp_path, model)
        try:
            seen = terminal.wait_for("> ")
            terminal.type("a question that takes forever\n")
            assert asked.wait(timeout=30), terminal.output
            terminal.type("\x03")
            seen = terminal.wait_for("[stopped; your message is kept in the conversation]", after=seen)
            seen = terminal.wait_for("> ", after=seen)
            terminal.type("and another one\n")
            seen = terminal.wait_for("Here is the second answer.", after=seen)
            seen = terminal.wait_for("> ", after=seen)
            terminal.type("\x04")
            assert terminal.process.wait(timeout=20) == 0
        finally:
            terminal.close()
    history = [(m["role"], m.get("content")) for m in model.bodies[-1]["messages"][1:]]
    assert history[0] == ("user", "a question that takes forever")
    assert history[-1] == ("user", "and another one")
    assert "mcp_server_connected" not in terminal.output  # INFO lines stay out of the conversation


def test_the_operator_blocks_users_sees_the_stats_and_reloads_the_servers_from_the_terminal(tmp_path: Path) -> None:
    with ScriptedModelServer() as model:
        terminal = Terminal(tmp_path, model)
        try:
            seen = terminal.wait_for("> ")
            terminal.type("/block 5\n")
            seen = terminal.wait_for("Blocked.", after=seen)
            terminal.type("/block 5\n")
            seen = terminal.wait_for("Blocked already.", after=seen)
            terminal.type("/stats\n")  # read from the database: the block shows
            seen = terminal.wait_for("Users: 0 (1 blocked), active today: 0", after=seen)
            terminal.type("/unblock 5\n")
            seen = terminal.wait_for("Unblocked.", after=seen)
            terminal.type("/block someone\n")
            seen = terminal.wait_for("Usage: /block USER_ID", after=seen)
            terminal.type("/usage\n")
            seen = terminal.wait_for("Today (UTC) you used 0 tokens in 0 answers", after=seen)
            (tmp_path / "mcp_servers.json").write_text(
                json.dumps({"mcpServers": {"ours": peer_server(), "more": peer_server()}})
            )
            terminal.type("/reload\n")
            seen = terminal.wait_for("started more; 1 kept running.", after=seen)
            (tmp_path / "mcp_servers.json").write_text("{not json")
            terminal.type("/reload\n")
            seen = terminal.wait_for("error: ", after=seen)
            seen = terminal.wait_for("mcp_servers.json", after=seen)
            terminal.type("/exit\n")
            assert terminal.process.wait(timeout=20) == 0
        finally:
            terminal.close()


def test_the_chat_settings_commands_choose_what_the_next_turn_sends(tmp_path: Path) -> None:
    """/model, /temperature, /system and /settings at the terminal, refusals included; the next turn carries them,
    a later run still does (they are stored), and /reset settings restores the defaults."""

    def chat(lines: list[str], model: ScriptedModelServer) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "host", "chat", "--chat-id", "9"],
            cwd=ROOT,
            env=chat_env(tmp_path, model, servers={}, LLM_MODELS="big-model", LOG_LEVEL="ERROR"),
            input="".join(line + "\n" for line in lines),
            capture_output=True,
            text=True,
            timeout=60,
        )

    with ScriptedModelServer() as model:
        model.always(Reply(text="fine"))
        first = chat(
            [
                "/model huge-model",
                "/temperature 3",
                "/system " + "y" * 1001,
                "/model big-model",
                "/temperature 0.2",
                "/system Reply in haiku.",
                "/settings",
                "a question",
            ],
            model,
        )
        assert first.returncode == 0, first.stderr
        assert "That model is not offered here. Choose one of: scripted, big-model" in first.stderr
        assert "The temperature must be from 0 to 2." in first.stderr
        assert "A personal system prompt holds at most 1,000 characters." in first.stderr
        assert "model: big-model; choices: scripted, big-model" in first.stderr
        assert "temperature: 0.2 (0-2)" in first.stderr and "): Reply in haiku." in first.stderr
        later = chat(["another question", "/reset settings", "a last question"], model)
        assert later.returncode == 0, later.stderr
        assert "model: scripted (the default)" in later.stderr
        assert "temperature: 0.7 (the default) (0-2)" in later.stderr
    sent = [(body["model"], body["temperature"], body["messages"][0]["content"]) for body in model.bodies]
    assert [(name, temperature) for name, temperature, _ in sent] == [
        ("big-model", 0.2),
        ("big-model", 0.2),
        ("scripted", 0.7),
    ]
    assert sent[0][2].endswith("<user-preferences>\nReply in haiku.\n</user-preferences>")
    assert "user-preferences" not in sent[2][2]


def test_export_writes_the_terminal_chats_history_into_a_folder(tmp_path: Path) -> None:
    """/export FOLDER at the terminal: the two files of Telegram's /export for this chat, with their paths; an empty
    chat has nothing to export and a folder that does not exist is a clear message."""

    def chat(lines: list[str], model: ScriptedModelServer, chat_id: int = 3) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "host", "chat", "--chat-id", str(chat_id)],
            cwd=ROOT,
            env=chat_env(tmp_path, model, servers={}, LOG_LEVEL="ERROR"),
            input="".join(line + "\n" for line in lines),
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = tmp_path / "out"
    out.mkdir()
    with ScriptedModelServer() as model:
        model.always(Reply(text="Noted."))
        done = chat(
            ["remember the lighthouse", "/reset", "/export " + str(out), "/export " + str(tmp_path / "no")], model
        )
        empty = chat(["/export " + str(out)], model, chat_id=4)
    assert done.returncode == 0, done.stderr
    written = sorted(out.iterdir())
    assert [path.suffix for path in written] == [".json", ".md"]
    assert f"wrote {written[0]}" in done.stderr and f"wrote {written[1]}" in done.stderr
    document = json.loads(written[0].read_bytes())
    conversation = document["conversations"][0]
    assert document["user_id"] is None and conversation["reset_at"] is not None
    assert [message["text"] for message in conversation["messages"]] == ["remember the lighthouse", "Noted."]
    assert "**You**" in written[1].read_text() and "lighthouse" in written[1].read_text()
    assert "Could not write the export: No such file or directory" in done.stderr
    assert "There is nothing to export" in empty.stderr
