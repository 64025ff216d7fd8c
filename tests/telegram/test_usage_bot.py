"""Usage, budgets and /stats end to end: `mcpbot run` against the fake Bot API and a scripted model that reports
its usage. A user over USER_DAILY_TOKEN_BUDGET is told when it resets and nothing they send is stored or reaches
the model; /usage shows their day; /stats and GET /api/admin/stats show the day's figures to admins only; with
AUDIT_TOOL_CALLS a tool call is in the audit log by server and tool name, never its arguments."""

import json
import sqlite3
from pathlib import Path

import httpx

from host.telegram.admin import STATS_PRIVATE
from host.telegram.frontend import USAGE_PRIVATE
from tests.conftest import free_port, peer_server
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

ADMIN = 7
TOKEN = "0123456789abcdef0123456789abcdef"


def database(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(folder / "data" / "mcpbot.db")


def test_a_user_over_budget_is_told_when_it_resets_and_admins_see_the_day(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(
        Reply(
            tool_calls=(Call("peer__env", {"name": "SECRET_ARGUMENT"}), Call("my card 4111 1111 1111 1111", {})),
            usage=(30, 5),
        ),
        lambda body: Reply(text=f"done {tool_results(body)[0]}", usage=(40, 5)),
    )
    port = free_port()
    env = {
        "ADMIN_USER_IDS": str(ADMIN),
        "USER_DAILY_TOKEN_BUDGET": "80",
        "AUDIT_TOOL_CALLS": "true",
        "METRICS_PORT": str(port),
        "ADMIN_API_TOKEN": TOKEN,
    }
    url = f"http://127.0.0.1:{port}/api/admin/stats"
    with BotProcess(api, model, tmp_path, servers={"peer": peer_server()}, env=env) as bot:
        api.push_message(42, "use the tool")
        bot.wait_until(lambda: len(api.texts(42)) == 1, timeout=30)
        api.push_message(42, "the budget is spent now")
        api.push_message(42, "/usage")
        api.push_message(42, "/stats")  # not an admin: the help text
        bot.wait_until(lambda: len(api.texts(42)) == 4)
        api.push_message(ADMIN, "/stats")
        api.push_message(-100, "/stats@fake_bot", chat_type="supergroup", user_id=ADMIN)
        api.push_message(-100, "/usage@fake_bot", chat_type="supergroup", user_id=42)
        bot.wait_until(lambda: len(api.texts(ADMIN)) == 1 and len(api.texts(-100)) == 2)
        stats = httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        without = httpx.get(url, timeout=10)
        wrong = httpx.get(url, headers={"Authorization": "Bearer " + "f" * 32}, timeout=10)
    answered, over, usage, help_text = api.texts(42)
    assert answered.startswith("done")
    assert over.startswith("⏳ You have used your 80 tokens for today. It resets at 00:00 UTC, in ")
    assert usage.startswith("Today (UTC) you used 80 tokens in 1 answers (2 model calls, 2 tool calls).")
    assert "Your daily budget is 80 tokens: 0 left." in usage
    assert "Commands:" in help_text and "/stats" not in help_text
    assert len(model.requests) == 2  # the refused message never reached the model
    admin_stats = api.texts(ADMIN)[0]
    assert "Messages answered: 1" in admin_stats and "Model calls: 2, tool calls: 2" in admin_stats
    assert "Tokens: 80" in admin_stats and "Users: 1 (0 blocked), active today: 1" in admin_stats
    assert api.texts(-100) == [STATS_PRIVATE, USAGE_PRIVATE]  # a group never sees anyone's figures
    assert stats.status_code == 200 and stats.json()["today"]["tokens"] == 80 and stats.json()["users"] == 1
    assert (without.status_code, wrong.status_code) == (401, 403)
    with database(tmp_path) as db:
        contents = [row[0] for row in db.execute("SELECT content FROM messages")]
        audit = db.execute("SELECT actor, action, detail FROM audit_log").fetchall()
    assert not [text for text in contents if text and "budget is spent" in text]
    assert sorted(((a, b, json.loads(c)) for a, b, c in audit), key=str) == [  # the calls ran side by side
        (42, "tool_call", {"server": "?", "tool": "?", "ok": False}),  # a made-up name is the model's text
        (42, "tool_call", {"server": "peer", "tool": "env", "ok": True}),
    ]
    assert "SECRET_ARGUMENT" not in str(audit) and "4111" not in str(audit)
