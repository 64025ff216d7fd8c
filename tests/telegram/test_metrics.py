"""GET /metrics as an operator's Prometheus sees it: `mcpbot run` in polling mode with METRICS_PORT, real turns
through the fake Bot API, the scripted model and our MCP test server, then a scrape over HTTP. Also the one
`turn_finished` line each turn logs, and /metrics on the webhook's own port."""

import socket
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port, peer_server
from tests.peers.openai_server import Call, Fail, Reply, ScriptedModelServer, tool_results
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

MODEL_DOWN = "⚠️ The model is not answering right now. Your message is saved; send it again in a minute."


def scrape(port: int) -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """The /metrics text, and each sample's value by (name, labels)."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return response.text, values


def value(values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return values.get((name, frozenset(labels.items())))


def test_metrics_count_the_turns_tool_calls_and_failures_a_user_saw(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    port = free_port()
    model.script(
        Reply(tool_calls=(Call("ours__add", {"a": 19, "b": 23}),), usage=(100, 10)),
        lambda body: Reply(text=f"Done: {tool_results(body)[0]}.", usage=(120, 5)),
        Fail(500),
        Reply(text="Hello, admin.", usage=(30, 4)),
    )
    api.fail("setMyCommands", 500, "Internal Server Error")  # the bot logs it and goes on
    env = {"METRICS_PORT": str(port), "ADMIN_USER_IDS": "7"}
    with BotProcess(api, model, tmp_path, servers={"ours": peer_server()}, env=env) as bot:
        api.push_message(42, "add 19 and 23")
        bot.wait_until(lambda: api.texts(42) == ["Done: 42."], timeout=20)
        api.push_message(42, "and now?")
        bot.wait_until(lambda: len(api.texts(42)) == 2, timeout=20)
        api.push_message(7, "hi")
        bot.wait_until(lambda: api.texts(7) == ["Hello, admin."], timeout=20)
        bot.wait_until(lambda: bot.log.count('"turn_finished"') == 3)
        text, values = scrape(port)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=10)
        events = bot.log_events()
    assert api.texts(42)[1] == MODEL_DOWN

    # messages: two answered (one of them an admin's), one failed because the model was down
    assert value(values, "bot_messages_total", status="answered", user_type="user") == 1
    assert value(values, "bot_messages_total", status="answered", user_type="admin") == 1
    assert value(values, "bot_messages_total", status="failed", user_type="user") == 1
    assert value(values, "bot_active_users") == 2
    assert value(values, "bot_active_sessions") == 0
    assert value(values, "bot_queued_messages") == 0
    # the tool call, with its server and tool, and how long it took
    assert value(values, "mcp_tool_calls_total", mcp_name="ours", tool_name="add", status="ok") == 1
    assert value(values, "mcp_tool_call_duration_seconds_count", mcp_name="ours", tool_name="add") == 1
    assert value(values, "mcp_server_up", mcp_name="ours") == 1
    # the model: three requests answered, one failed with a 5xx; the tokens it reported
    assert value(values, "llm_request_duration_seconds_count", model=model.model, status="ok") == 3
    assert value(values, "llm_request_duration_seconds_count", model=model.model, status="http_5xx") == 1
    assert value(values, "llm_tokens_total", model=model.model, kind="prompt") == 250
    assert value(values, "llm_tokens_total", model=model.model, kind="completion") == 19
    # Telegram's refusal of setMyCommands, by method and status; the database and model as of the scrape
    assert value(values, "telegram_api_errors_total", method="setMyCommands", code="500") == 1
    assert value(values, "bot_database_up") == 1
    assert value(values, "llm_up") == 1
    assert (value(values, "process_resident_memory_bytes") or 0) > 0
    assert api.token not in text and "19 and 23" not in text  # no secret, no message text
    assert health.status_code == 200 and health.json() == {"status": "alive"}
    assert ready.status_code == 200 and ready.json()["servers"] == {"ours": "connected"}

    # each turn logged one summary line: chat, user, duration, tokens, tool calls, outcome
    summaries = [event for event in events if event.get("event") == "turn_finished"]
    answered, failed, admin = summaries
    assert answered["outcome"] == "answered" and answered["chat_id"] == 42 and answered["user_id"] == 42
    assert answered["tool_calls"] == 1 and answered["steps"] == 2 and answered["seconds"] > 0
    assert (answered["prompt_tokens"], answered["completion_tokens"]) == (220, 15)
    assert failed["outcome"] == "failed" and failed["error"] == "ModelUnavailable" and failed["user_id"] == 42
    assert (failed["prompt_tokens"], failed["tool_calls"]) == (0, 0)
    assert admin["outcome"] == "answered" and admin["user_id"] == 7 and admin["prompt_tokens"] == 30


def test_metrics_are_served_on_the_webhook_port_and_on_metrics_port_too(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    port, metrics_port = free_port(), free_port()
    env = {
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/telegram/webhook",
        "TELEGRAM_WEBHOOK_SECRET": "s3cret-token_value",
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        "METRICS_PORT": str(metrics_port),  # as a container sets it for its HEALTHCHECK, whatever the mode
    }
    with BotProcess(api, model, tmp_path, servers={"ours": peer_server()}, env=env):
        _text, values = scrape(port)
        _text, values_too = scrape(metrics_port)
        health = httpx.get(f"http://127.0.0.1:{metrics_port}/health", timeout=10)
    assert value(values, "mcp_server_up", mcp_name="ours") == 1
    assert value(values, "bot_database_up") == 1
    assert value(values_too, "mcp_server_up", mcp_name="ours") == 1
    assert health.json() == {"status": "alive"}


def test_a_metrics_port_already_taken_stops_the_bot_with_the_setting_named(
    api: FakeBotAPI, model: ScriptedModelServer, tmp_path: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        bot = BotProcess(api, model, tmp_path, env={"METRICS_PORT": str(port)})
        with bot.start(wait=False):
            assert bot.process is not None
            code = bot.process.wait(60)
    assert code == 2
    assert f"METRICS_HOST/METRICS_PORT: cannot listen on 127.0.0.1:{port}" in bot.log
