"""`mcpbot run` end to end: a subprocess talking to the fake Bot API (PTB pointed at it with base_url), the
scripted model server, and our MCP test server as a real stdio subprocess."""

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import ROOT, free_port, peer_server, process_alive
from tests.peers.openai_server import Call, Fail, Reply, ScriptedModelServer, last_user_text, tool_results
from tests.peers.telegram_server import FakeBotAPI, parse_html, utf16_len
from tests.postgres import drop_databases
from tests.stores import ThrowAwayDatabases, databases
from tests.telegram.botrun import BotProcess

OURS = {"ours": peer_server()}
__all__ = ["databases"]  # the fixture


def history(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in body["messages"][1:]]


def bot_process(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path, **options: Any) -> BotProcess:
    return BotProcess(api, model, tmp_path, **options)


# -- answers ------------------------------------------------------------------------------------------------------


def test_a_question_gets_its_answer_and_the_commands_are_the_menu(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="Paris is the **capital** of France."))
    with bot_process(api, model, tmp_path, env={"LOG_LEVEL": "DEBUG"}) as bot:
        api.push_message(42, "What is the capital of France?")
        bot.wait_until(lambda: api.texts(42) == ["Paris is the capital of France."])
    assert api.raw_texts(42) == ["Paris is the <b>capital</b> of France."]
    assert [command["command"] for command in api.commands] == [
        *["start", "help", "reset", "tools", "servers"],
        *["settings", "model", "temperature", "system", "mcp", "usage", "forget", "export"],
    ]
    assert last_user_text(model.bodies[0]) == "What is the capital of France?"
    assert "turn_finished" in bot.log and api.token not in bot.log


def test_a_tool_answer_carries_the_result_and_the_preview_shows_the_tool(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(
        Reply(tool_calls=(Call("ours__sleep", {"seconds": 1.5}), Call("ours__add", {"a": 19, "b": 23}))),
        lambda body: Reply(text=f"Done: {tool_results(body)[1]}."),
    )
    with bot_process(api, model, tmp_path, servers=OURS) as bot:
        api.push_message(42, "add 19 and 23, slowly")
        bot.wait_until(lambda: api.texts(42) == ["Done: 42."], timeout=20)
    drafts = [sent["params"]["text"] for sent in api.sent(42) if sent["method"] == "sendMessageDraft"]
    assert any("ours: sleep seconds=1.5" in draft for draft in drafts), drafts
    assert api.sent(42)[-1]["method"] == "sendMessage"  # the draft is replaced by the answer


def test_a_slow_answer_in_one_chat_does_not_delay_another(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.always(
        lambda body: Reply(text="slow answer", delay=30) if "slow" in last_user_text(body) else Reply(text="quick")
    )
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(1, "a slow question")
        bot.wait_until(lambda: len(model.requests) == 1)
        started = time.monotonic()
        api.push_message(2, "a quick question")
        bot.wait_until(lambda: api.texts(2) == ["quick"])
        assert time.monotonic() - started < 5
        assert api.texts(1) == []


def test_two_messages_in_one_chat_are_answered_in_order(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.always(lambda body: Reply(text=f"answer to {last_user_text(body)}", delay=0.5))
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(42, "first")
        api.push_message(42, "second")
        bot.wait_until(lambda: len(api.texts(42)) == 2, timeout=15)
    assert api.texts(42) == ["answer to first", "answer to second"]
    # The second turn started after the first was answered, and saw it.
    assert history(model.bodies[1]) == [("user", "first"), ("assistant", "answer to first"), ("user", "second")]


def test_a_long_answer_arrives_as_several_valid_messages(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    paragraphs = [f"Paragraph {n}: " + "**bold** and `code` " * 60 for n in range(12)]
    model.script(Reply(text="\n\n".join(paragraphs)))
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(42, "tell me a lot")
        bot.wait_until(lambda: len(api.texts(42)) >= 3 and "Paragraph 11" in api.texts(42)[-1], timeout=15)
    texts = api.texts(42)
    assert all(utf16_len(text) <= 4096 for text in texts)
    assert all(parse_html(raw) for raw in api.raw_texts(42))  # each part is valid HTML on its own
    joined = "\n\n".join(texts)
    assert all(f"Paragraph {n}:" in joined for n in range(12))
    assert joined.count("bold and code") == 12 * 60


def test_markdown_that_telegram_refuses_still_arrives_as_plain_text(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="**unclosed _mess [link]( `tick"))
    api.fail("sendMessage", 400, "Bad Request: can't parse entities: Unsupported start tag at byte offset 3")
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(42, "say something odd")
        bot.wait_until(lambda: len(api.texts(42)) == 1)
    message = api.messages(42)[0]
    assert "unclosed" in message["text"] and "mess" in message["text"] and "tick" in message["text"]
    assert api.sent(42)[-1]["params"].get("parse_mode") is None


def test_flood_control_is_waited_out_without_losing_the_answer(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="worth the wait"))
    api.flood("sendMessage", times=1, retry_after=2)
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(42, "hello")
        bot.wait_until(lambda: api.texts(42) == ["worth the wait"], timeout=15)
    refused, delivered = [call for call in api.calls_of("sendMessage")]
    assert refused.status == 429 and delivered.status == 200
    assert delivered.at - refused.at >= 2.0


# -- failures -----------------------------------------------------------------------------------------------------


def test_a_model_failure_is_a_short_message_and_the_question_is_kept(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Fail(500, times=1))
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(42, "remember the number 7")
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        assert "model is not answering" in api.texts(42)[0]
        model.script(Reply(text="You said 7."))
        api.push_message(42, "what number?")
        bot.wait_until(lambda: len(api.texts(42)) == 2)
    assert history(model.bodies[-1])[0] == ("user", "remember the number 7")
    failure = next(event for event in bot.log_events() if event.get("event") == "turn_failed")
    assert failure["chat_id"] == 42 and failure["user_id"] == 42 and failure["cause"] == "model"
    assert "HTTP 500" in failure["error"]


def test_a_crashing_tool_server_does_not_take_the_bot_down(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(
        Reply(tool_calls=(Call("ours__crash"),)),
        lambda body: Reply(text=f"The tool failed: {tool_results(body)[0][:60]}"),
        Reply(text="still here"),
    )
    with bot_process(api, model, tmp_path, servers=OURS) as bot:
        api.push_message(42, "crash it")
        bot.wait_until(lambda: len(api.texts(42)) == 1, timeout=20)
        api.push_message(42, "are you there?")
        bot.wait_until(lambda: len(api.texts(42)) == 2, timeout=20)
    assert api.texts(42)[0].startswith("The tool failed: Error:")
    assert api.texts(42)[1] == "still here"


def test_a_database_that_goes_away_is_a_short_message(
    api: FakeBotAPI,
    model: ScriptedModelServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    databases: ThrowAwayDatabases,
) -> None:
    server = request.getfixturevalue("postgres_url")
    url = databases.create(server)
    model.always(Reply(text="fine"))
    with bot_process(api, model, tmp_path, database_url=url) as bot:
        api.push_message(42, "first")
        bot.wait_until(lambda: api.texts(42) == ["fine"])
        anyio.run(drop_databases, server, [url])  # the database disappears under the running bot
        api.push_message(42, "second")
        bot.wait_until(lambda: len(api.texts(42)) == 2, timeout=30)
    assert api.texts(42)[1].startswith("⚠️ I cannot reach my database right now")
    failure = next(event for event in bot.log_events() if event.get("event") == "turn_failed")
    assert failure["cause"] == "storage" and failure["chat_id"] == 42 and failure["user_id"] == 42


def test_a_message_over_the_rate_limit_is_told_to_wait(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.always(Reply(text="fine"))
    env = {"RATE_LIMIT_USER_REQUESTS": "1", "ADMIN_USER_IDS": "7"}
    with bot_process(api, model, tmp_path, env=env) as bot:
        for text in ("one", "two"):
            api.push_message(42, text)
        api.push_message(7, "admin one")
        api.push_message(7, "admin two")
        bot.wait_until(lambda: len(api.texts(42)) == 2 and len(api.texts(7)) == 2)
    assert api.texts(42)[0] == "fine" and "Too many messages right now. Try again in" in api.texts(42)[1]
    assert api.texts(7) == ["fine", "fine"]  # admins are not limited


def test_a_photo_gets_a_clear_answer(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path) -> None:
    photo = {"file_id": "p1", "file_unique_id": "u1", "width": 1, "height": 1}
    chat = {"id": 42, "type": "private", "first_name": "U"}
    message = {"message_id": 1, "date": 0, "chat": chat, "from": {"id": 42, "is_bot": False, "first_name": "U"}}
    with bot_process(api, model, tmp_path) as bot:
        api.push_update({"message": {**message, "photo": [photo]}})
        bot.wait_until(lambda: len(api.texts(42)) == 1)
    assert api.texts(42) == ["I can only read text messages for now."]


# -- commands, groups and topics ----------------------------------------------------------------------------------


def test_commands_reset_tools_and_servers(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path) -> None:
    model.always(lambda body: Reply(text=f"seen {len(history(body))}"))
    with bot_process(api, model, tmp_path, servers=OURS) as bot:
        api.push_message(42, "hello")
        api.push_message(42, "/reset")
        api.push_message(42, "again")
        api.push_message(42, "/tools")
        api.push_message(42, "/servers")
        api.push_message(42, "/start")
        api.push_message(42, "/nonsense")
        bot.wait_until(lambda: len(api.texts(42)) == 7, timeout=15)
    hello, reset, again, tools, servers, start, unknown = api.texts(42)
    assert (hello, again) == ("seen 1", "seen 1")  # the reset dropped "hello" from the history
    assert "new conversation" in reset
    assert tools.startswith("ours\n") and "add" in tools and "echo" in tools
    assert "model scripted-model: answering" in servers and "ours: connected, 16 tools" in servers
    assert "/reset" in start and "scripted-model" in start and "/tools" in unknown


def test_groups_answer_mentions_and_replies_and_topics_have_their_own_history(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.always(lambda body: Reply(text=f"re: {last_user_text(body)} ({len(history(body))})"))
    group = -100
    with bot_process(api, model, tmp_path) as bot:
        api.push_message(group, "chatting among ourselves", chat_type="supergroup", user_id=5)
        api.push_message(group, "@fake_bot what is up?", chat_type="supergroup", user_id=5)
        bot.wait_until(lambda: len(api.texts(group)) == 1)
        api.push_message(group, "and then?", chat_type="supergroup", user_id=6, reply_to_bot=True)
        api.push_message(group, "@fake_bot in a topic", chat_type="supergroup", user_id=5, message_thread_id=9)
        bot.wait_until(lambda: len(api.texts(group)) == 3)
    assert set(api.texts(group)) == {"re: what is up? (1)", "re: and then? (3)", "re: in a topic (1)"}
    replies = [sent["params"] for sent in api.sent(group) if sent["method"] == "sendMessage"]
    assert all("reply_parameters" in params for params in replies)  # in groups the bot replies to the message
    assert any(params.get("message_thread_id") == 9 for params in replies)
    assert len(model.requests) == 3  # the unaddressed message never reached the model


def test_a_group_preview_is_an_edited_message_at_most_once_a_second(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(
        Reply(text="Let me look.", tool_calls=(Call("ours__sleep", {"seconds": 3}),)),
        Reply(text="Here it is."),
    )
    group = -100
    with bot_process(api, model, tmp_path, servers=OURS) as bot:
        api.push_message(group, "@fake_bot look it up", chat_type="group", user_id=5)
        bot.wait_until(lambda: "Here it is." in "".join(api.texts(group)), timeout=20)
    assert len(api.texts(group)) == 1  # the preview message became the answer
    assert api.texts(group)[0] == "Here it is."
    shown = [sent["params"]["text"] for sent in api.sent(group)]
    assert any("Let me look." in text and "ours: sleep seconds=3" in text for text in shown[:-1]), shown
    assert not any(sent["method"] == "sendMessageDraft" for sent in api.sent(group))
    times = [sent["at"] for sent in api.sent(group)]
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times))


# -- delivery guarantees ------------------------------------------------------------------------------------------


def test_a_repeated_update_is_answered_once_also_across_a_restart(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.always(lambda body: Reply(text=f"answer to {last_user_text(body)}"))
    bot = bot_process(api, model, tmp_path)
    with bot:
        api.push_message(42, "once", update_id=500)
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        api.push_message(42, "once", update_id=500)
        api.push_message(42, "next", update_id=501)
        bot.wait_until(lambda: len(api.texts(42)) == 2)
        assert bot.stop() == 0
    with bot.start():
        api.push_message(42, "once", update_id=500)
        api.push_message(42, "after the restart", update_id=502)
        bot.wait_until(lambda: len(api.texts(42)) == 3)
    assert api.texts(42) == ["answer to once", "answer to next", "answer to after the restart"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_restart_keeps_the_history(
    api: FakeBotAPI,
    model: ScriptedModelServer,
    tmp_path: Path,
    backend: str,
    request: pytest.FixtureRequest,
    databases: ThrowAwayDatabases,
) -> None:
    model.always(lambda body: Reply(text=f"noted ({len(history(body))})"))
    if backend == "postgresql":
        url = databases.create(request.getfixturevalue("postgres_url"))
    else:
        url = f"sqlite+aiosqlite:///{tmp_path}/data/history.db"
    bot = bot_process(api, model, tmp_path, database_url=url)
    with bot:
        api.push_message(42, "my name is Ada")
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        assert bot.stop() == 0
    with bot.start():
        api.push_message(42, "what is my name?")
        bot.wait_until(lambda: len(api.texts(42)) == 2)
    assert history(model.bodies[-1]) == [
        ("user", "my name is Ada"),
        ("assistant", "noted (1)"),
        ("user", "what is my name?"),
    ]


def test_sigterm_lets_a_running_turn_finish_and_leaves_no_process(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="finished in time", delay=1.5))
    with bot_process(api, model, tmp_path, servers=OURS) as bot:
        assert bot.process is not None
        children = _children(bot.process.pid)
        assert children, "the MCP test server runs as a child process"
        api.push_message(42, "take your time")
        bot.wait_until(lambda: len(model.requests) == 1)
        assert bot.stop() == 0
    assert api.texts(42) == ["finished in time"]
    assert not [pid for pid in children if process_alive(pid)]
    assert "bot_stopped" in bot.log


def test_a_turn_past_the_grace_time_is_cut_short_with_a_note(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="too late", delay=60))
    with bot_process(api, model, tmp_path, env={"SHUTDOWN_GRACE_SECONDS": "0.5"}) as bot:
        api.push_message(42, "a long question")
        api.push_message(42, "and one waiting behind it")
        bot.wait_until(lambda: len(model.requests) == 1)
        started = time.monotonic()
        assert bot.stop() == 0
        assert time.monotonic() - started < 10
    assert api.texts(42) == [
        "⚠️ I was restarted before I could answer. Your message is saved; please send it again.",
        "⚠️ I was restarted before I got to this message. Please send it again.",
    ]
    assert "shutdown_grace_over" in bot.log


def test_a_signal_during_start_up_stops_the_bot_and_its_servers(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    hanging = {"command": "sleep", "args": ["60"]}  # never answers the MCP handshake
    bot = bot_process(api, model, tmp_path, servers={"hanging": hanging})
    with bot.start(wait=False):
        assert bot.process is not None
        pid = bot.process.pid
        children = _poll(lambda: _children(pid), timeout=30)
        assert bot.stop(timeout=15) == 0
    assert not [child for child in children if process_alive(child)]
    assert not api.calls_of("getUpdates")


def _poll(probe: Callable[[], list[int]], timeout: float) -> list[int]:
    """Re-check a condition outside the fake API (a process table) until it holds; bounded."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not found within {timeout} s")
        time.sleep(0.05)
    return found


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(line) for line in found.stdout.split()]


# -- start-up errors ----------------------------------------------------------------------------------------------


def _run_briefly(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "MCP_SERVERS_CONFIG": str(tmp_path / "none.json"),
    }
    (tmp_path / "none.json").write_text('{"mcpServers": {}}')
    return subprocess.run(
        [sys.executable, "-m", "host", "run"], cwd=tmp_path, env={**base, **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_a_missing_or_rejected_token_is_a_clear_error(api: FakeBotAPI, tmp_path: Path) -> None:
    missing = _run_briefly({"PYTHONPATH": str(ROOT)}, tmp_path)
    assert missing.returncode == 2 and "TELEGRAM_BOT_TOKEN is not set" in missing.stderr
    wrong = "999:WRONG-TOKEN-VALUE"
    rejected = _run_briefly(
        {"PYTHONPATH": str(ROOT), "TELEGRAM_BOT_TOKEN": wrong, "TELEGRAM_API_BASE_URL": api.base_url}, tmp_path
    )
    assert rejected.returncode == 2 and "TELEGRAM_BOT_TOKEN was rejected" in rejected.stderr
    assert wrong not in rejected.stderr


# -- webhook ------------------------------------------------------------------------------------------------------


def test_the_webhook_refuses_a_wrong_secret_and_serves_the_right_one(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    port = free_port()
    secret = "s3cret-token_value"
    env = {
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram/hook",
        "TELEGRAM_WEBHOOK_SECRET": secret,
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
    }
    model.always(lambda body: Reply(text=f"hooked: {last_user_text(body)}"))
    chat = {"id": 42, "type": "private", "first_name": "U"}

    def update(update_id: int, text: str) -> dict[str, Any]:
        sender = {"id": 42, "is_bot": False, "first_name": "U"}
        return {
            "update_id": update_id,
            "message": {"message_id": update_id, "date": 0, "chat": chat, "from": sender, "text": text},
        }

    url = f"http://127.0.0.1:{port}"
    with bot_process(api, model, tmp_path, env=env, servers=OURS) as bot:
        assert api.webhook == {"url": env["TELEGRAM_WEBHOOK_URL"], "secret_token": secret}
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/health").json() == {"status": "alive"}
            ready = client.get("/ready")
            assert ready.status_code == 200
            assert ready.json() == {
                "status": "ready",
                "database": "ok",
                "model": "ok",
                "servers": {"ours": "connected"},
            }
            refused = [
                client.post("/telegram/hook", json=update(1, "no secret")),
                client.post(
                    "/telegram/hook", json=update(2, "wrong"), headers={"X-Telegram-Bot-Api-Secret-Token": "x"}
                ),
            ]
            accepted = client.post(
                "/telegram/hook", json=update(3, "right"), headers={"X-Telegram-Bot-Api-Secret-Token": secret}
            )
            bot.wait_until(lambda: len(api.texts(42)) == 1)
    assert [response.status_code for response in refused] == [403, 403] and accepted.status_code == 200
    assert api.texts(42) == ["hooked: right"]
    assert [last_user_text(body) for body in model.bodies] == ["right"]
    assert not api.calls_of("getUpdates")


def test_ready_reports_a_dead_model(api: FakeBotAPI, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook",
        "TELEGRAM_WEBHOOK_SECRET": "abc",
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
    }
    with ScriptedModelServer() as model:
        bot = bot_process(api, model, tmp_path, env={**env, "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"})
    with bot:
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=20)
    assert ready.status_code == 503
    assert ready.json()["model"] == "unavailable" and ready.json()["database"] == "ok"


def test_a_webhook_without_a_secret_does_not_start(api: FakeBotAPI, tmp_path: Path) -> None:
    done = _run_briefly(
        {
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": api.token,
            "TELEGRAM_API_BASE_URL": api.base_url,
            "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook",
        },
        tmp_path,
    )
    assert done.returncode == 2 and "TELEGRAM_WEBHOOK_SECRET must be set" in done.stderr


def test_a_webhook_port_in_use_is_a_clear_error(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook",
            "TELEGRAM_WEBHOOK_SECRET": "abc",
            "WEBHOOK_HOST": "127.0.0.1",
            "WEBHOOK_PORT": str(port),
        }
        bot = bot_process(api, model, tmp_path, env=env).start(wait=False)
        assert bot.process is not None
        assert bot.process.wait(60) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in bot.log


def test_sigint_stops_the_bot_too(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path) -> None:
    with bot_process(api, model, tmp_path) as bot:
        assert bot.stop(signal.SIGINT) == 0
