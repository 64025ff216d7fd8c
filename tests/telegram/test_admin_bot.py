"""Access and admin commands in Telegram, end to end: `mcpbot run` against the fake Bot API and a scripted model.
A user left out by ALLOWED_USER_IDS, or blocked by an admin, hears so once a day, and nothing they send is stored
or reaches the model; admin commands are in the admins' menu only and do nothing for anyone else; /reload
applies an edited mcp_servers.json, or says why it cannot and changes nothing."""

import json
import sqlite3
from pathlib import Path

from host.telegram.frontend import BLOCKED, NOT_ALLOWED
from tests.conftest import peer_server
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

ADMIN = 7


def stored_texts(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "data" / "mcpbot.db") as database:
        return [row[0] for row in database.execute("SELECT content FROM messages WHERE content IS NOT NULL")]


def test_a_user_left_out_hears_it_once_and_nothing_is_stored(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="Hello, friend."))
    env = {"ALLOWED_USER_IDS": "42", "ADMIN_USER_IDS": str(ADMIN)}
    with BotProcess(api, model, tmp_path, env=env) as bot:
        api.push_message(43, "a stranger's first words")
        api.push_message(43, "a stranger's second words")
        api.push_message(43, "/tools")
        api.push_message(42, "hi, I am on the list")
        bot.wait_until(lambda: api.texts(42) == ["Hello, friend."])
        bot.wait_until(lambda: bot.log.count('"access_refused"') == 3)
    assert api.texts(43) == [NOT_ALLOWED]
    assert stored_texts(tmp_path) == ["hi, I am on the list", "Hello, friend."]
    assert len(model.requests) == 1


def test_an_admin_blocks_and_unblocks_a_user(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path) -> None:
    model.script(Reply(text="Welcome back."))
    with BotProcess(api, model, tmp_path, env={"ADMIN_USER_IDS": str(ADMIN)}) as bot:
        api.push_message(42, "/block 7")  # not an admin: the help text, nothing blocked
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        api.push_message(ADMIN, "/block 42")
        bot.wait_until(lambda: api.texts(ADMIN) == ["Blocked 42: nothing they send is stored or answered."])
        api.push_message(42, "my secret plan")
        api.push_message(42, "my secret plan, again")
        bot.wait_until(lambda: bot.log.count('"access_refused"') == 2)
        api.push_message(ADMIN, "/block 7")
        api.push_message(ADMIN, "/unblock 42")
        api.push_message(ADMIN, "/unblock")
        api.push_message(ADMIN, "/block 99999999999999999999")
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 5)
        api.push_message(42, "am I back?")
        bot.wait_until(lambda: api.texts(42)[-1:] == ["Welcome back."])
    help_text, *rest = api.texts(42)
    assert "Commands:" in help_text and "/block" not in help_text
    assert rest == [BLOCKED, "Welcome back."]
    assert api.texts(ADMIN)[1:] == [
        "7 is an admin (ADMIN_USER_IDS) and cannot be blocked.",
        "Unblocked 42.",
        "Usage: /unblock USER_ID (the user's numeric Telegram id)",
        "Usage: /block USER_ID (the user's numeric Telegram id)",
    ]
    assert not [text for text in stored_texts(tmp_path) if "secret plan" in text]
    assert [call.params.get("scope", {}).get("type", "default") for call in api.calls_of("setMyCommands")] == [
        "default",
        "chat",
    ]
    everyone, admins = (call.params["commands"] for call in api.calls_of("setMyCommands"))
    assert "block" not in str(everyone) and "block" in str(admins)
    assert api.calls_of("setMyCommands")[1].params["scope"]["chat_id"] == ADMIN


def test_reload_restarts_the_changed_server_and_refuses_a_broken_file(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    servers = {"kept": peer_server(), "changed": peer_server()}
    model.script(
        Reply(tool_calls=(Call("changed__env", {"name": "FLAVOUR"}),)),
        lambda body: Reply(text=f"flavour {tool_results(body)[0]}"),
    )
    with BotProcess(api, model, tmp_path, servers=servers, env={"ADMIN_USER_IDS": str(ADMIN)}) as bot:
        config = tmp_path / "mcp_servers.json"
        servers["changed"] = {**peer_server(), "env": {"FLAVOUR": "fresh"}}
        config.write_text(json.dumps({"mcpServers": servers}))
        api.push_message(42, "/reload")  # not an admin: nothing reloaded
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        api.push_message(ADMIN, "/reload")
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 1, timeout=30)
        api.push_message(ADMIN, "which flavour?")
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 2, timeout=30)
        config.write_text('{"mcpServers": {"kept": {"command": 42}}}')
        api.push_message(ADMIN, "/reload")
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 3)
    assert "Commands:" in api.texts(42)[0]
    assert api.texts(ADMIN)[0] == "Reloaded mcp_servers.json: restarted changed; 1 kept running."
    assert api.texts(ADMIN)[1] == "flavour fresh"
    broken = api.texts(ADMIN)[2]
    assert broken.startswith("Nothing changed: ") and "mcp_servers.json" in broken and "kept" in broken
    assert bot.log.count('"mcp_servers_reloaded"') == 1
