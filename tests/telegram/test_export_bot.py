"""/export end to end: `mcpbot run` with the fake Bot API, a scripted model and a SQLite file. In the private chat
the user gets two documents holding their conversations and their own group messages, never another user's; in a
group nothing of the history is posted; the audit log, also as the admin API serves it, records the export
without content; a document Telegram does not take is a clear message."""

import json
import sqlite3
from pathlib import Path

import httpx

from host.telegram.export import NOT_SENT, NOTHING, ONLY_PRIVATE
from tests.conftest import free_port
from tests.peers.openai_server import Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

USER, OTHER, STRANGER, GROUP = 42, 43, 44, -100
TOKEN = "0123456789abcdef0123456789abcdef"


def audit(port: int, query: str = "", token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"http://127.0.0.1:{port}/api/admin/audit{query}", headers=headers, timeout=30)


def test_export_sends_the_users_history_as_two_documents_and_nothing_to_a_group(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="Noted in private."), Reply(text="Noted, 42."), Reply(text="Noted, 43."))
    port = free_port()
    env = {"TELEGRAM_GROUP_TRIGGER": "all", "METRICS_PORT": str(port), "ADMIN_API_TOKEN": TOKEN}
    with BotProcess(api, model, tmp_path, env=env) as bot:
        api.push_message(USER, "my private phrase: blue heron")
        bot.wait_until(lambda: api.texts(USER) == ["Noted in private."])
        api.push_message(GROUP, "my group phrase: red fox", user_id=USER, chat_type="group")
        bot.wait_until(lambda: len(api.texts(GROUP)) == 1)
        api.push_message(GROUP, "another user's phrase: green owl", user_id=OTHER, chat_type="group")
        bot.wait_until(lambda: len(api.texts(GROUP)) == 2)
        api.push_message(GROUP, "/export", user_id=USER, chat_type="group")
        bot.wait_until(lambda: len(api.texts(GROUP)) == 3)
        api.push_message(USER, "/export")
        bot.wait_until(lambda: len(api.documents(USER)) == 2)
        api.push_message(STRANGER, "/export")
        bot.wait_until(lambda: len(api.texts(STRANGER)) == 1)
        api.fail("sendDocument", 502, "Bad Gateway")
        api.push_message(USER, "/export")
        bot.wait_until(lambda: api.texts(USER)[-1:] == [NOT_SENT])
        api.fail("sendDocument", 403, "Forbidden: bot was blocked by the user")
        api.push_message(USER, "/export")
        bot.wait_until(lambda: '"chat_unreachable"' in bot.log)
        without = audit(port, token=None)
        wrong = audit(port, token="f" * 32)
        bad = [
            audit(port, query).status_code for query in ("?limit=0", "?limit=501", "?limit=x", "?limit=" + "9" * 5000)
        ]
        entries = audit(port, "?limit=2").json()["entries"]
        default = audit(port).json()["entries"]
    json_file, markdown_file = api.documents(USER)
    document = json.loads(json_file["data"])
    texts = [message["text"] for conversation in document["conversations"] for message in conversation["messages"]]
    assert texts == ["my private phrase: blue heron", "Noted in private.", "my group phrase: red fox"]
    assert json_file["file_name"].startswith(f"mcpbot-export-{USER}-") and json_file["file_name"].endswith(".json")
    assert markdown_file["file_name"] == json_file["file_name"].removesuffix(".json") + ".md"
    markdown = markdown_file["data"].decode()
    assert "**You**" in markdown and "blue heron" in markdown and "red fox" in markdown and "**Bot**" in markdown
    assert "green owl" not in markdown and "green owl" not in json_file["data"].decode()
    assert json_file["caption"] and markdown_file["caption"]
    assert api.texts(GROUP)[-1] == ONLY_PRIVATE and api.documents(GROUP) == []
    assert api.texts(STRANGER) == [NOTHING]
    assert api.texts(USER)[-1] == NOT_SENT and api.texts(USER).count(NOT_SENT) == 1  # nobody to tell when blocked
    with sqlite3.connect(tmp_path / "data" / "mcpbot.db") as database:
        rows = database.execute("SELECT actor, subject, detail FROM audit_log WHERE action = 'export'").fetchall()
    assert [(actor, subject) for actor, subject, _ in rows] == [(USER, USER), (STRANGER, STRANGER), *[(USER, USER)] * 2]
    first = json.loads(rows[0][2])
    assert (first["messages"], first["conversations"], first["cut"]) == (3, 2, False)
    assert first["json_bytes"] == len(json_file["data"]) and first["markdown_bytes"] == len(markdown_file["data"])
    assert all("heron" not in detail and "fox" not in detail for _, _, detail in rows)
    assert (without.status_code, wrong.status_code, bad) == (401, 403, [400, 400, 400, 400])
    assert [(entry["action"], entry["subject"]) for entry in entries] == [("export", USER), ("export", USER)]
    assert entries[0]["detail"]["messages"] == 3 and entries[0]["at"].endswith("+00:00")
    assert len(default) == 4 and default[2]["subject"] == STRANGER
