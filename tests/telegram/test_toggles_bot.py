"""/mcp end to end: `mcpbot run` against the fake Bot API, a scripted model and two real MCP servers. A press of
a server's button turns it off for this chat only: its tools leave what this chat's model is offered, a call to
one anyway is not run, the list is redrawn in place; /mcp on brings it back; in a group only admins may switch."""

from pathlib import Path
from typing import Any

from tests.conftest import peer_server
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, last_user_text, tool_results
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

ADMIN = 7


def offered(body: dict[str, Any]) -> set[str]:
    return {tool["function"]["name"].split("__")[0] for tool in body.get("tools") or []}


def keyboard(message: dict[str, Any]) -> list[tuple[str, str]]:
    return [(row[0]["text"], row[0]["callback_data"]) for row in message["reply_markup"]["inline_keyboard"]]


def test_a_server_switched_off_leaves_this_chats_catalogue_only(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    def script(body: dict[str, Any]) -> Reply:
        if last_user_text(body) == "call it anyway" and not tool_results(body):
            return Reply(tool_calls=(Call("other__pid", {}),))
        return Reply(text=f"{sorted(offered(body))} {tool_results(body)}")

    model.always(script)
    servers = {"files": peer_server(), "other": peer_server()}
    with BotProcess(api, model, tmp_path, servers=servers, env={"ADMIN_USER_IDS": str(ADMIN)}) as bot:
        api.push_message(42, "/mcp")
        bot.wait_until(lambda: len(api.texts(42)) == 1)
        assert keyboard(api.messages(42)[0]) == [("✅ files", "mcp:off:files"), ("✅ other", "mcp:off:other")]
        api.push_callback(42, "mcp:off:other")
        bot.wait_until(lambda: len(api.callback_answers) == 1)
        assert api.callback_answers[0]["text"] == "other is off: its tools are no longer offered here."
        assert keyboard(api.messages(42)[0]) == [("✅ files", "mcp:off:files"), ("⬜ other", "mcp:on:other")]
        api.push_message(42, "what can you use?")
        api.push_message(43, "and I?")  # another chat keeps every server
        api.push_message(42, "call it anyway")
        bot.wait_until(lambda: len(api.texts(42)) == 3 and len(api.texts(43)) == 1, timeout=30)
        api.push_callback(42, "mcp:off:nosuch")  # forged
        api.push_message(42, "/mcp on other")
        bot.wait_until(lambda: len(api.texts(42)) == 4 and len(api.callback_answers) == 2)
        api.push_message(42, "and now?")
        api.push_message(-100, "/mcp@fake_bot off files", chat_type="supergroup", user_id=5)
        bot.wait_until(lambda: len(api.texts(42)) == 5 and len(api.texts(-100)) == 1, timeout=30)
    assert api.texts(42)[1] == "['files'] []"
    assert api.texts(43) == ["['files', 'other'] []"]
    assert (
        api.texts(42)[2]
        == "['files'] [\"Error: not run: this chat turned that tool's server off (/mcp). Do without it.\"]"
    )
    assert api.callback_answers[1]["text"] == "There is no server by that name here. /mcp lists them."
    assert api.texts(42)[3] == "other is on."
    assert api.texts(42)[4] == "['files', 'other'] []"
    assert api.texts(-100) == ["In a group only the bot's admins can change its settings."]
