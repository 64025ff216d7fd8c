"""The webhook surface against hostile clients, over real sockets: the webhook app served by its hardened
uvicorn in this process (timeouts, size caps, bad JSON), and `mcpbot run` in webhook mode as a subprocess
(half-open connection floods, wrong secrets, readiness probes)."""

import json
import os
import socket
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from structlog.testing import capture_logs
from telegram import Bot, Update

from host.log import Throttle
from host.telegram.webhook import MAX_UPDATE_BYTES, webhook_app
from host.telegram.webserver import Limits, WebServer
from tests.conftest import free_port
from tests.peers.openai_server import Reply, ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI
from tests.telegram.botrun import BotProcess

SECRET = "s3cret-token_value"


def update(update_id: int, text: str = "hi") -> dict[str, Any]:
    chat = {"id": 42, "type": "private", "first_name": "U"}
    sender = {"id": 42, "is_bot": False, "first_name": "U"}
    return {
        "update_id": update_id,
        "message": {"message_id": update_id, "date": 0, "chat": chat, "from": sender, "text": text},
    }


def post_head(length: int | None, *, secret: str = SECRET, chunked: bool = False) -> bytes:
    lines = [
        "POST /hook HTTP/1.1",
        "Host: bot",
        "Content-Type: application/json",
        f"X-Telegram-Bot-Api-Secret-Token: {secret}",
    ]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- in process -----------------------------------------------------------------------------------------------


@dataclass
class Served:
    port: int
    updates: list[Update] = field(default_factory=list)


@asynccontextmanager
async def serving(limits: Limits) -> AsyncIterator[Served]:
    """The webhook app on a loopback socket; connections queue from the start, so no wait is needed."""

    async def readiness() -> tuple[bool, dict[str, Any]]:
        return True, {}

    listener = socket.create_server(("127.0.0.1", 0))
    served = Served(listener.getsockname()[1])
    refusals = Throttle()
    app = webhook_app(
        path="/hook",
        secret=SECRET,
        bot=Bot("123:TEST"),
        accept=served.updates.append,
        readiness=readiness,
        refusals=refusals,
    )
    server = WebServer(app, limits, refusals)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [listener])
        try:
            yield served
        finally:
            server.should_exit = True


async def response_of(stream: anyio.abc.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while True:
            received += await stream.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError):
        return received


async def post(port: int, body: bytes) -> httpx.Response:
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        return await client.post("/hook", content=body, headers=headers)


@pytest.mark.anyio
async def test_a_slow_request_head_and_a_slow_body_are_cut_off_after_the_read_timeout() -> None:
    with capture_logs() as logs:
        async with serving(Limits(read_timeout=0.5)) as served:
            with anyio.fail_after(10):
                async with await anyio.connect_tcp("127.0.0.1", served.port) as head:
                    await head.send(b"POST /hook HTTP/1.1\r\nHost: bot\r\n")  # and never the rest
                    started = anyio.current_time()
                    assert await response_of(head) == b""
                    assert anyio.current_time() - started >= 0.4
                async with await anyio.connect_tcp("127.0.0.1", served.port) as body:
                    await body.send(post_head(100) + b'{"update_id": 1')  # 15 of 100 bytes
                    assert await response_of(body) == b""
                assert (await post(served.port, json.dumps(update(3)).encode())).status_code == 200  # still serving
    reasons = {entry.get("reason") for entry in logs if entry["event"] == "webhook_refused"}
    assert {"request head not read within 0.5 s", "request body not read within 0.5 s"} <= reasons
    assert [item.update_id for item in served.updates] == [3]


@pytest.mark.anyio
async def test_an_oversized_body_is_refused_before_it_is_read() -> None:
    async with serving(Limits(read_timeout=30)) as served:
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", served.port) as declared:
                await declared.send(post_head(10 * MAX_UPDATE_BYTES))  # and no body at all
                assert (await response_of(declared)).startswith(b"HTTP/1.1 413 ")
            async with await anyio.connect_tcp("127.0.0.1", served.port) as chunked:
                await chunked.send(post_head(None, chunked=True))
                piece = b"[" * 65536
                for _ in range(MAX_UPDATE_BYTES // len(piece) + 1):
                    await chunked.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                assert (await response_of(chunked)).startswith(b"HTTP/1.1 413 ")
            assert (await post(served.port, json.dumps(update(5)).encode())).status_code == 200
    assert [item.update_id for item in served.updates] == [5]


@pytest.mark.anyio
async def test_deeply_nested_json_is_a_400_and_the_webhook_goes_on() -> None:
    with capture_logs() as logs:
        async with serving(Limits()) as served:
            with anyio.fail_after(10):
                nested = await post(served.port, b"[" * 100_000 + b"]" * 100_000)
                not_an_update = await post(served.port, b'{"update_id": "x", "message": 5}')
                fine = await post(served.port, json.dumps(update(7)).encode())
    assert (nested.status_code, not_an_update.status_code, fine.status_code) == (400, 400, 200)
    assert [item.update_id for item in served.updates] == [7]
    assert not [entry for entry in logs if entry["log_level"] in ("error", "critical")]


@pytest.mark.anyio
async def test_at_the_cap_the_oldest_idle_connection_makes_room() -> None:
    async with serving(Limits(max_connections=5, read_timeout=30)) as served:
        with anyio.fail_after(10):
            idle = [await anyio.connect_tcp("127.0.0.1", served.port) for _ in range(5)]
            answered = await post(served.port, json.dumps(update(9)).encode())  # the sixth connection
            assert answered.status_code == 200
            assert await response_of(idle[0]) == b""  # the oldest was closed to let it in
            for stream in idle:
                await stream.aclose()


# -- end to end -----------------------------------------------------------------------------------------------


def webhook_bot(api: FakeBotAPI, model: ScriptedModelServer, folder: Path, **env: str) -> tuple[BotProcess, str]:
    port = free_port()
    settings = {
        "TELEGRAM_WEBHOOK_URL": "https://bot.example.com/hook",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "WEBHOOK_HOST": "127.0.0.1",
        "WEBHOOK_PORT": str(port),
        **env,
    }
    return BotProcess(api, model, folder, env=settings), f"http://127.0.0.1:{port}"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_half_open_connections_are_capped_and_health_still_answers(api: FakeBotAPI, tmp_path: Path) -> None:
    with ScriptedModelServer() as model:
        bot, url = webhook_bot(api, model, tmp_path, WEBHOOK_MAX_CONNECTIONS="100")
        with bot, ExitStack() as sockets:
            assert bot.process is not None
            assert httpx.get(f"{url}/health", timeout=10).status_code == 200
            fds_before, log_before = open_fds(bot.process.pid), len(bot.log)
            for index in range(300):
                half_open = sockets.enter_context(socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))))
                if index % 2:
                    half_open.sendall(b"POST /hook HTTP/1.1\r\nHost: bot\r\n")  # a head that never ends
            health = httpx.get(f"{url}/health", timeout=10)  # accepted after all 300 (the backlog is in order)
            fds_during = open_fds(bot.process.pid)
            log_growth = len(bot.log) - log_before
    assert health.status_code == 200 and health.json() == {"status": "alive"}
    assert fds_during - fds_before <= 100 + 5  # today: one per connection, 300 and more
    assert log_growth < 2000  # a line or two, not one per connection


def test_wrong_secrets_bad_json_and_readiness_probes_cost_a_few_lines_and_no_completion(
    api: FakeBotAPI, tmp_path: Path
) -> None:
    with ScriptedModelServer() as model:
        model.always(Reply(text="still here"))
        # A model name the server does not list: today /ready then asks for a completion to be sure.
        bot, url = webhook_bot(api, model, tmp_path, LLM_MODEL_NAME="unlisted-model")
        with bot, httpx.Client(base_url=url, timeout=20) as client:
            wrong = [
                client.post("/hook", json=update(n), headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
                for n in range(200)
            ]
            nested = client.post(
                "/hook", content=b"[" * 100_000 + b"]" * 100_000, headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            listings_before = model.listings
            with ThreadPoolExecutor(10) as pool:
                probes = list(pool.map(lambda _: httpx.get(f"{url}/ready", timeout=20), range(50)))
            listings = model.listings - listings_before
            accepted = client.post(
                "/hook", json=update(500, "after all that"), headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
            )
            bot.wait_until(lambda: len(api.texts(42)) == 1)
    assert {response.status_code for response in wrong} == {403} and nested.status_code == 400
    assert accepted.status_code == 200 and api.texts(42) == ["still here"]
    assert {probe.status_code for probe in probes} == {200} and probes[0].json()["model"] == "ok"
    assert listings <= 1  # today: 50
    assert len(model.bodies) == 1  # the one real question: /ready sent no completion
    refusals = [event for event in bot.log_events() if event.get("event") == "webhook_refused"]
    assert 1 <= len([event for event in refusals if event["reason"] == "wrong secret token"]) <= 2  # today: 200
    assert "Traceback" not in bot.log
