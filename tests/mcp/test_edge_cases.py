"""Third-party servers' edge cases, each against a real server process that misbehaves on purpose
(tests/peers/hostile_mcp_server.py): tool errors that look like a lost connection, tools the SDK refuses,
bytes that are not UTF-8, huge lines, base64 everywhere, sessions left open, and the texts that explain a failure."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from host.mcp import server_log, stdio
from host.mcp.config import parse_servers
from host.mcp.connection import ServerConnection, Status
from host.mcp.registry import Registry
from host.mcp.tools import BinaryPart
from tests.conftest import ROOT, peer_server, process_alive

pytestmark = pytest.mark.anyio

HOSTILE = "tests.peers.hostile_mcp_server"
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{200,}")


def hostile(*args: str, **settings: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": ["-m", HOSTILE, *args], "cwd": str(ROOT), **settings}


def registry_of(servers: dict[str, Any]) -> Registry:
    return Registry(parse_servers({"mcpServers": servers}, source="test", environ={}), backoff_first=0.1)


async def only(registry: Registry) -> ServerConnection:
    (connection,) = await registry.connections()
    return connection


async def test_a_minus_32000_error_from_the_server_is_a_tool_error_and_the_connection_stays() -> None:
    with anyio.fail_after(30):
        async with registry_of({"h": hostile()}) as registry:
            connection = await only(registry)
            pid = (await registry.call("h__pid", {})).text()
            for message in ("database is busy", "Connection closed"):  # even the SDK's own words
                failed = await registry.call("h__server_error", {"message": message})
                assert failed.is_error and failed.text() == f"server_error failed: {message} (MCP error -32000)"
            assert connection.status is Status.CONNECTED
            assert (await registry.call("h__pid", {})).text() == pid  # the same process: nothing was restarted


async def test_a_tool_the_sdk_refuses_is_skipped_and_named_and_the_others_stay() -> None:
    with anyio.fail_after(30), capture_logs() as logs:
        async with registry_of({"h": hostile("--untyped-tool")}) as registry:
            connection = await only(registry)
            assert connection.status is Status.CONNECTED, connection.error
            names = {tool.name for tool in connection.tools}
            assert "untyped" not in names and {"echo", "pid"} <= names
            assert (await registry.call("h__echo", {"text": "still here"})).text() == "still here"
    skipped = [entry for entry in logs if entry["event"] == "mcp_tool_skipped"]
    assert [(entry["tool"], entry["server"]) for entry in skipped] == [("untyped", "h")]
    assert "inputSchema.type" in skipped[0]["reason"]


async def test_tools_that_run_only_as_tasks_are_hidden_and_named_in_the_log() -> None:
    with anyio.fail_after(30), capture_logs() as logs:
        async with registry_of({"h": hostile("--task-tool")}) as registry:
            assert "h__background_job" not in {entry.name for entry in await registry.catalogue()}
            assert "h__echo" in {entry.name for entry in await registry.catalogue()}
    skipped = [entry for entry in logs if entry["event"] == "mcp_tool_skipped"]
    assert [entry["tool"] for entry in skipped] == ["background_job"] and "task" in skipped[0]["reason"]


async def test_bytes_that_are_not_utf8_are_replaced_and_later_calls_still_work() -> None:
    with anyio.fail_after(30):
        async with registry_of({"h": hostile(timeout=5.0)}) as registry:
            connection = await only(registry)
            assert (await registry.call("h__bad_utf8", {})).text() == "caf\ufffd \ufffd\ufffd ok"
            assert (await registry.call("h__garbage_line", {})).text() == "after the garbage"
            with anyio.fail_after(2):  # answered at once, not after the 5 s timeout
                assert (await registry.call("h__echo", {"text": "next"})).text() == "next"
            assert connection.status is Status.CONNECTED


async def test_a_line_over_the_byte_cap_fails_its_call_at_once_and_the_next_call_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stdio, "MAX_LINE_BYTES", 1 << 20)
    with anyio.fail_after(30):
        async with registry_of({"h": hostile(timeout=20.0)}) as registry:
            with anyio.fail_after(5):
                refused = await registry.call("h__echo", {"text": "x" * (3 << 20)})
            assert refused.is_error and "more than 1,048,576 bytes" in refused.text()
            assert (await registry.call("h__echo", {"text": "small"})).text() == "small"


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
async def test_a_result_with_too_many_items_fails_at_once_with_a_clear_error(transport: str, http_server: Any) -> None:
    server = hostile() if transport == "stdio" else {"url": http_server(HOSTILE)}
    with anyio.fail_after(30):
        async with registry_of({"h": server}) as registry:
            refused = await registry.call("h__items", {"count": 20_000})
            assert refused.is_error
            assert "the result has 20,000 content items; the limit is 10,000" in refused.text()
            assert (await registry.call("h__items", {"count": 3})).text() == "item 0\nitem 1\nitem 2"


async def test_binary_data_reaches_the_model_as_a_note_not_as_base64() -> None:
    with anyio.fail_after(30):
        async with registry_of({"h": hostile()}) as registry:
            result = await registry.call("h__image_echo", {})
    text = result.text()
    assert not BASE64_RUN.search(text), text[:300]
    assert text.startswith("[image: image/png, 10248 bytes]") and '"caption": "a chart"' in text
    assert "[image/png, about 10," in text and "[binary data, about 10," in text
    (picture,) = [part for part in result.parts if isinstance(part, BinaryPart)]
    assert (picture.kind, picture.mime_type, picture.size) == ("image", "image/png", 10248)


async def test_the_streamable_http_session_is_deleted_when_the_bot_stops(http_server: Any, tmp_path: Path) -> None:
    record = tmp_path / "deletes.txt"
    with anyio.fail_after(30):
        async with registry_of({"remote": {"url": http_server(HOSTILE, "--record", str(record))}}) as registry:
            assert (await registry.call("remote__echo", {"text": "hi"})).text() == "hi"
            assert not record.exists()
    assert re.fullmatch(r"DELETE [0-9a-f]{32} known\n", record.read_text())


async def test_failures_say_what_happened(http_server: Any) -> None:
    servers = {
        "locked": {"url": http_server(HOSTILE, "--status", "401")},
        "silent": hostile("--exit", "3"),
        "chatty": hostile("--non-json", init_timeout=1.0),
        "garbage": peer_server("--garbage"),
    }
    with anyio.fail_after(30):
        async with registry_of(servers) as registry:
            errors = {connection.name: connection.error or "" for connection in await registry.connections()}
    port = servers["locked"]["url"].split(":")[2].split("/")[0]
    assert errors["locked"].startswith(f"HTTP 401 from http://127.0.0.1:{port}/mcp: the server wants authentication")
    assert errors["silent"] == "it exited with status 3"
    assert "non-JSON on stdout" in errors["chatty"] and "'Starting hostile server v0 on stdio...'" in errors["chatty"]
    assert errors["garbage"] == (
        "it exited with status 1; it wrote non-JSON on stdout, which is only for the protocol: "
        "'this is not JSON-RPC'; stderr: Traceback: pretend crash"
    )


async def test_a_stdio_server_gets_the_proxy_certificate_and_locale_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    passed = {
        "HTTPS_PROXY": "http://proxy.internal:3128",
        "no_proxy": "localhost,127.0.0.1",
        "SSL_CERT_FILE": "/etc/ssl/corporate.pem",
        "NODE_EXTRA_CA_CERTS": "/etc/ssl/corporate.pem",
        "LANG": "de_DE.UTF-8",
        "LC_TIME": "de_DE.UTF-8",
        "TZ": "Europe/Berlin",
    }
    for name, value in passed.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:secret")  # the bot's own secrets stay with the bot
    names = [*passed, "TELEGRAM_BOT_TOKEN"]
    with anyio.fail_after(30):
        async with registry_of({"h": hostile(env={"TZ": "UTC"})}) as registry:
            seen = json.loads((await registry.call("h__env", {"names": names})).text())
    assert seen == passed | {"TZ": "UTC", "TELEGRAM_BOT_TOKEN": None}  # the server's own `env` wins


# Runs a command and prints the peak resident memory of its largest process, in KiB (RUSAGE_CHILDREN).
MEASURE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_mib_of_mcpbot_call(config: Path, tool: str, arguments: dict[str, Any]) -> tuple[str, int]:
    """Run `mcpbot call h TOOL ARGS`; its stderr, and the peak resident memory of the bot or of the server,
    whichever is larger (the hostile server streams what it writes and stays small)."""
    env = {"PATH": "/usr/bin:/bin", "MCP_SERVERS_CONFIG": str(config), "LOG_LEVEL": "ERROR", "HOME": str(config.parent)}
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "host", "call", "h", tool, json.dumps(arguments)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    return done.stderr, int(done.stdout) // 1024


def test_a_result_of_200_000_items_fails_at_once_and_keeps_the_bot_small(write_config: Any) -> None:
    config = write_config({"h": hostile()})
    errors, peak = peak_mib_of_mcpbot_call(config, "items", {"count": 200_000})
    assert "items failed: the server sent a message of more than 100,000 JSON objects" in errors
    assert peak < 150, f"{peak} MiB for a result of 200,000 items"  # main: 476 MiB (a 50 MB stderr line: 198)


async def test_an_http_error_during_a_call_names_its_status_and_url(http_server: Any) -> None:
    url = http_server(HOSTILE)
    with anyio.fail_after(30):
        async with registry_of({"remote": {"url": url}}) as registry:
            failed = await registry.call("remote__http_error", {})
            assert failed.is_error and failed.text() == f"http_error failed: HTTP 503 from {url} (MCP error -32603)"
            assert (await registry.call("remote__echo", {"text": "still"})).text() == "still"


async def test_a_server_that_ignores_its_closed_stdin_is_ended_with_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdio, "EXIT_WAIT", 0.2)
    with anyio.fail_after(30):
        async with registry_of({"h": hostile("--linger")}) as registry:
            pid = int((await registry.call("h__pid", {})).text())
        assert not process_alive(pid)


async def test_a_servers_log_messages_reach_the_bots_log_only_masked_cut_and_bounded() -> None:
    secret = "sk-live-0123456789abcdef"
    settings = {"env": {"API_KEY": secret}}
    with anyio.fail_after(30), capture_logs() as logs:
        async with registry_of({"h": hostile(**settings)}) as registry:
            await only(registry)
            for level in ("debug", "notice", "error", "emergency"):
                result = await registry.call("h__log_flood", {"count": 1, "level": level, "data": f"{level} {secret}"})
                assert result.text() == "logged"  # the tool's result holds nothing of its log messages
            shaped = await registry.call("h__log_flood", {"count": 1, "data": {"rows": 3, "text": "x" * 5000}})
            flood = await registry.call("h__log_flood", {"count": server_log.BURST + 20, "data": "again"})
            assert shaped.text() == flood.text() == "logged"
    lines = [entry for entry in logs if entry["event"] == "server_log"]
    assert [(entry["mcp_level"], entry["log_level"]) for entry in lines[:4]] == [
        ("debug", "debug"),
        ("notice", "info"),
        ("error", "error"),
        ("emergency", "critical"),
    ]
    assert all(entry["server"] == "h" and secret not in entry["data"] for entry in lines)
    assert lines[4]["data"].startswith('{"rows": 3, "text": "xxx') and len(lines[4]["data"]) <= server_log.MAX_CHARS
    assert len(lines) == server_log.BURST  # one connection's window: the flood's rest is dropped
