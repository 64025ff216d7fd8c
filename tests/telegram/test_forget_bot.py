"""/forget end to end: `mcpbot run` with the shipped kind of per-chat filesystem server, the fake Bot API and a
scripted model. After the user confirms, no row of theirs is left in the database and their workspace folder is
gone; another user's history and files stay; a press by anyone else, or "Keep it", deletes nothing."""

import sqlite3
import sys
from pathlib import Path

from host.telegram.forget import ASK, KEPT, NO, YES
from tests.peers.openai_server import Call, Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

USER, OTHER, GROUP = 42, 43, -100


def rows_of(folder: Path, user: int) -> dict[str, int]:
    with sqlite3.connect(folder / "data" / "mcpbot.db") as database:
        counts = {
            "conversations": "SELECT count(*) FROM conversations WHERE chat_id = ?",
            "messages": "SELECT count(*) FROM messages WHERE user_id = ? OR conversation_id IN"
            " (SELECT id FROM conversations WHERE chat_id = ?)",
            "users": "SELECT count(*) FROM users WHERE id = ?",
            "chat_settings": "SELECT count(*) FROM chat_settings WHERE chat_id = ?",
        }
        return {
            table: database.execute(query, (user,) * query.count("?")).fetchone()[0] for table, query in counts.items()
        }


def test_forget_deletes_every_row_and_the_workspace_of_that_user_only(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    workspace = {
        "command": sys.executable,
        "args": ["-m", "servers.filesystem", "--root", "${DATA_DIR}/workspaces/${CHAT_ID}"],
        "scope": "chat",
    }
    note = Call("files__write_file", {"file_path": "notes.txt", "content": "my diary"})
    model.script(
        Reply(tool_calls=(note,)),
        Reply(text="Saved."),
        Reply(tool_calls=(note,)),
        Reply(text="Saved too."),
        Reply(text="Noted in the group."),
    )
    env = {"DATA_DIR": str(tmp_path / "data"), "TELEGRAM_GROUP_TRIGGER": "all", "LLM_MODELS": "other-model"}
    with BotProcess(api, model, tmp_path, servers={"files": workspace}, env=env) as bot:
        for user in (USER, OTHER):
            api.push_message(user, "keep my diary")
            bot.wait_until(lambda user=user: api.texts(user)[-1:] == ["Saved." if user == USER else "Saved too."])
        api.push_message(GROUP, "a word in the group", user_id=USER, chat_type="group")
        bot.wait_until(lambda: api.texts(GROUP) == ["Noted in the group."])
        api.push_message(USER, "/temperature 1.1")
        api.push_message(USER, "/forget")
        bot.wait_until(lambda: api.texts(USER)[-1:] == [ASK])
        api.push_callback(USER, NO)
        bot.wait_until(lambda: api.texts(USER)[-1:] == [KEPT])
        kept = rows_of(tmp_path, USER)
        api.push_callback(USER, YES, user_id=OTHER)  # someone else's press on the user's buttons
        bot.wait_until(lambda: bot.log.count('"button_refused"') == 1)
        api.push_callback(USER, YES)
        bot.wait_until(lambda: api.texts(USER)[-1].startswith("Done: I deleted"))
        api.push_message(GROUP, "/forget", user_id=OTHER, chat_type="group")
        bot.wait_until(lambda: len(api.texts(GROUP)) == 2)
    assert kept["messages"] == 5 and kept["chat_settings"] == 1 and kept["users"] == 1  # 4 private, 1 in the group
    assert api.texts(USER)[-1] == "Done: I deleted 5 messages and 1 folder, and everything else I kept of you."
    assert rows_of(tmp_path, USER) == {"conversations": 0, "messages": 0, "users": 0, "chat_settings": 0}
    assert not (tmp_path / "data" / "workspaces" / str(USER)).exists()
    assert (tmp_path / "data" / "workspaces" / str(OTHER) / "notes.txt").read_text() == "my diary"
    assert rows_of(tmp_path, OTHER)["messages"] == 4
    assert api.texts(GROUP)[-1] == "Send /forget in a private chat with me: there I can ask you to confirm."
