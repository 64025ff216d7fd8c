"""What a Telegram user can learn from the bot: status words, not a failing server's stderr (admins see the
reason, redacted); the log never holds a credential; commands count against the rate limit. `mcpbot run`
end to end against the fake Bot API, with a real stdio server that fails."""

import sys
from pathlib import Path

from tests.peers.openai_server import ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

LEAK = "postgresql://bob:hunter2@db/x?sslkey=abc token=xyz"
SECRETS = ("hunter2", "sslkey=abc", "xyz", "pa55word")
ADMIN = 7


def test_a_failing_servers_stderr_reaches_only_admins_and_never_the_log(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    leaky = tmp_path / "leaky_server.py"
    leaky.write_text(f"import sys\nprint('cannot connect to {LEAK}', file=sys.stderr)\nsys.exit(3)\n")
    servers = {"leaky": {"command": sys.executable, "args": [str(leaky)]}}
    # Credentials in the Bot API's URL (a self-hosted server behind basic auth) must not be logged either.
    base_url = api.base_url.replace("http://", "http://bot:pa55word@")
    env = {"ADMIN_USER_IDS": str(ADMIN), "LOG_LEVEL": "DEBUG", "TELEGRAM_API_BASE_URL": base_url}
    with BotProcess(api, model, tmp_path, servers=servers, env=env) as bot:
        bot.wait_until(lambda: bot.log.count('"mcp_server_down"') >= 2)  # it failed and was retried
        for user in (42, ADMIN):
            api.push_message(user, "/servers")
            api.push_message(user, "/tools")
        bot.wait_until(lambda: len(api.texts(42)) == 2 and len(api.texts(ADMIN)) == 2)
    user_servers, user_tools = api.texts(42)
    admin_servers, _admin_tools = api.texts(ADMIN)
    assert "leaky: failed" in user_servers and "stderr" not in user_servers and "postgresql" not in user_servers
    assert "No tools are available" in user_tools
    assert "leaky: failed: " in admin_servers and "postgresql://***@db/x?*** token=***" in admin_servers
    for text in (*api.texts(42), *api.texts(ADMIN), bot.log):
        assert not [secret for secret in SECRETS if secret in text]
    signed_in = next(event for event in bot.log_events() if event.get("event") == "signed_in")
    assert signed_in["api"] == api.base_url  # without the user and password


def test_commands_count_against_the_rate_limit(api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path) -> None:
    env = {"RATE_LIMIT_USER_REQUESTS": "2", "ADMIN_USER_IDS": str(ADMIN)}
    with BotProcess(api, model, tmp_path, env=env) as bot:
        for command in ("/help", "/servers", "/start"):
            api.push_message(42, command)
            api.push_message(ADMIN, command)
        bot.wait_until(lambda: len(api.texts(42)) == 3 and len(api.texts(ADMIN)) == 3)
    helped, servers, limited = api.texts(42)
    assert "/reset" in helped and "model scripted-model" in servers
    assert limited.startswith("⏳ Too many messages right now. Try again in")
    assert not [text for text in api.texts(ADMIN) if "Too many" in text]  # admins are not limited
