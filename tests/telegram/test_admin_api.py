"""The admin HTTP API as an operator's script uses it: `mcpbot run` with ADMIN_API_TOKEN, on METRICS_PORT in
polling mode and on the webhook's port with a webhook; strangers get 401 or 403 and change nothing."""

import json
from pathlib import Path

import httpx
import pytest

from host.telegram.frontend import BLOCKED
from tests.conftest import free_port, peer_server
from tests.peers.openai_server import Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

TOKEN = "0123456789abcdef0123456789abcdef"


def post(port: int, path: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"http://127.0.0.1:{port}/api/admin{path}", headers=headers, timeout=30)


def test_the_api_blocks_unblocks_and_reloads_for_the_token_only(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    model.script(Reply(text="Welcome back."))
    port = free_port()
    servers = {"kept": peer_server()}
    env = {"METRICS_PORT": str(port), "ADMIN_API_TOKEN": TOKEN}
    with BotProcess(api, model, tmp_path, servers=servers, env=env) as bot:
        without = post(port, "/users/42/block", token=None)
        wrong = post(port, "/users/42/block", token="f" * 32)
        basic = httpx.post(f"http://127.0.0.1:{port}/api/admin/reload", auth=("admin", TOKEN), timeout=10)
        api.push_message(42, "not blocked yet")
        bot.wait_until(lambda: bot.log.count('"turn_finished"') == 1)
        too_big = post(port, "/users/" + "9" * 5000 + "/block")
        blocked = post(port, "/users/42/block")
        again = post(port, "/users/42/block")
        api.push_message(42, "now I am blocked")
        bot.wait_until(lambda: bot.log.count('"access_refused"') == 1)
        unblocked = post(port, "/users/42/unblock")
        (tmp_path / "mcp_servers.json").write_text(json.dumps({"mcpServers": {**servers, "new": peer_server()}}))
        reloaded = post(port, "/reload")
        (tmp_path / "mcp_servers.json").write_text("[]")
        broken = post(port, "/reload")
    assert (without.status_code, without.headers["www-authenticate"]) == (401, "Bearer")
    assert wrong.status_code == 403 and basic.status_code == 401
    assert (too_big.status_code, too_big.json()) == (400, {"error": "not a Telegram user id"})
    assert (blocked.status_code, blocked.json()) == (200, {"user_id": 42, "outcome": "blocked"})
    assert again.json()["outcome"] == "already"
    assert api.texts(42)[-1] == BLOCKED
    assert unblocked.json() == {"user_id": 42, "unblocked": True}
    assert reloaded.json() == {"started": ["new"], "restarted": [], "stopped": [], "kept": ["kept"]}
    assert broken.status_code == 422 and "mcp_servers.json" in broken.json()["error"]
    assert TOKEN not in bot.log


def test_without_a_token_there_is_no_api_and_with_a_webhook_it_is_on_its_port(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    port = free_port()
    (tmp_path / "plain").mkdir()
    (tmp_path / "webhook").mkdir()
    with BotProcess(api, model, tmp_path / "plain", env={"METRICS_PORT": str(port)}):
        missing = post(port, "/reload")
    port = free_port()
    env = {
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram/webhook",
        "TELEGRAM_WEBHOOK_SECRET": "s3cret-token_value",
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        "ADMIN_API_TOKEN": TOKEN,
    }
    with BotProcess(api, model, tmp_path / "webhook", env=env):
        served = post(port, "/users/5/block")
        refused = post(port, "/users/5/unblock", token="nope")
    assert missing.status_code == 404
    assert served.json() == {"user_id": 5, "outcome": "blocked"} and refused.status_code == 403


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"ADMIN_API_TOKEN": TOKEN}, "ADMIN_API_TOKEN is set, but nothing would serve the admin API"),
        ({"ADMIN_API_TOKEN": "short"}, "ADMIN_API_TOKEN: Value error, must be at least 24 characters"),
    ],
)
def test_an_admin_api_that_cannot_be_served_safely_stops_the_bot_at_start(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    bot = BotProcess(api, model, tmp_path, env=env)
    with bot.start(wait=False):
        assert bot.process is not None
        code = bot.process.wait(60)
    assert code == 2 and reason in bot.log
