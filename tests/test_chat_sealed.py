"""SECRET_KEY end to end, as an operator runs `mcpbot chat --once`: without a key the bot says content is stored in
clear; with one the SQLite file holds no word of the turn and the history still reaches the model; a wrong key is
a clear error naming SECRET_KEY, with nothing sent to the model."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results
from tests.test_chat_cli import chat_env

KEY = "an-operators-key-" + "k" * 32


def chat_once(
    tmp_path: Path, model: ScriptedModelServer, text: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    env = chat_env(tmp_path, model, LOG_LEVEL="WARNING", LOG_FORMAT="json", **settings)
    return subprocess.run(
        [sys.executable, "-m", "host", "chat", "--once", text, "--chat-id", "7"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def database_bytes(tmp_path: Path) -> bytes:
    return b"".join(path.read_bytes() for path in (tmp_path / "data").glob("mcpbot.db*"))


def test_sealed_chat_keeps_no_phrase_in_the_file_and_keeps_its_history(tmp_path: Path) -> None:
    with ScriptedModelServer() as model:
        model.script(Reply(text="Noted, in clear."))
        before = chat_once(tmp_path, model, "remember the albatross")
        assert before.returncode == 0, before.stderr
        assert "content_stored_in_clear" in before.stderr and "SECRET_KEY" in before.stderr

        model.script(
            Reply(tool_calls=(Call("ours__echo", {"text": "quokka-7731"}),)),
            lambda body: Reply(text=f"The quokka echo: {tool_results(body)[0]}."),
        )
        sealed = chat_once(tmp_path, model, "say quokka-7731 back", SECRET_KEY=KEY)
        assert sealed.returncode == 0, sealed.stderr
        assert "content_stored_in_clear" not in sealed.stderr and KEY not in sealed.stderr
        assert "quokka-7731" in sealed.stdout

        model.script(Reply(text="You told me two things."))
        again = chat_once(tmp_path, model, "what did I say?", SECRET_KEY=KEY)
        assert again.stdout == "You told me two things.\n", again.stderr
        history = [message.get("content") for message in model.bodies[-1]["messages"][1:]]
        assert history[0] == "remember the albatross" and "say quokka-7731 back" in history
        assert history[-1] == "what did I say?"
        raw = database_bytes(tmp_path)
        assert b"quokka" not in raw and b"what did I say" not in raw and b"two things" not in raw
        assert b"albatross" in raw  # written before the key: kept as it was, still read

        calls = len(model.bodies)
        wrong = chat_once(tmp_path, model, "hello?", SECRET_KEY="another-key-" + "w" * 32)
        assert wrong.returncode == 1 and wrong.stdout == ""
        assert "SECRET_KEY" in wrong.stderr and "quokka" not in wrong.stderr and "Traceback" not in wrong.stderr
        assert len(model.bodies) == calls  # nothing, garbage least of all, went to the model
