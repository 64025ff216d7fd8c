"""The registry against real MCP servers in subprocesses: ours, mcp-server-time (PyPI), server-filesystem (npm)."""

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from host import metrics
from host.errors import ServerUnavailable, UnknownToolError
from host.mcp.config import load_servers, parse_servers
from host.mcp.connection import ServerConnection, Status
from host.mcp.registry import Registry
from host.mcp.tools import BinaryPart
from tests.conftest import ROOT, free_port, npm_server, peer_server, process_alive, start_http_server

pytestmark = pytest.mark.anyio

PEER = "tests.peers.mcp_test_server"
OPENAI_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def connected(connection: ServerConnection) -> bool:
    return connection.status is Status.CONNECTED


async def connection_named(registry: Registry, name: str, chat_id: int = 0) -> ServerConnection:
    return next(c for c in await registry.connections(chat_id) if c.name == name)


async def test_every_tool_of_every_transport_is_listed_and_callable(
    write_config: Any, http_server: Any, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "hello.txt").write_text("hello from the npm server")
    config = write_config(
        {
            "ours_stdio": peer_server("--page-size", "3"),
            "ours_legacy": peer_server("--legacy"),
            "ours_sse": {"url": http_server(PEER, transport="sse")},
            "ours_http": {"type": "http", "url": http_server(PEER)},
            "time": {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]},
            "files": npm_server("mcp-server-filesystem", str(shared)),
        }
    )
    with anyio.fail_after(60):
        async with Registry(load_servers(config)) as registry:
            connections = await registry.connections()
            assert {c.name: c.status for c in connections} == {c.name: Status.CONNECTED for c in connections}
            assert {c.name: c.config.transport for c in connections}["ours_sse"] == "sse"

            catalogue = await registry.catalogue()
            names = [entry.name for entry in catalogue]
            assert len(names) == len(set(names))
            assert all(OPENAI_NAME.match(name) for name in names)
            by_server: dict[str, set[str]] = {}
            for entry in catalogue:
                by_server.setdefault(entry.spec.server, set()).add(entry.spec.name)
            ours = {"echo", "add", "pid", "sleep", "fail", "crash", "image", "big", "dotted.name-tool", "grow"}
            for server in ("ours_stdio", "ours_legacy", "ours_sse", "ours_http"):
                assert ours <= by_server[server], server  # ours_stdio lists 3 tools a page
            assert {"get_current_time", "convert_time"} <= by_server["time"]
            assert {"read_text_file", "list_directory"} <= by_server["files"]

            for server in ("ours_stdio", "ours_legacy", "ours_sse", "ours_http"):
                result = await registry.call(f"{server}__echo", {"text": f"hi {server}"})
                assert (result.is_error, result.text()) == (False, f"hi {server}")
            dotted = next(
                e.name for e in catalogue if e.spec.name == "dotted.name-tool" and e.spec.server == "ours_http"
            )
            assert (await registry.call(dotted, {})).text() == "dotted ok"
            now = await registry.call("time__get_current_time", {"timezone": "UTC"})
            assert not now.is_error and "UTC" in now.text()
            read = await registry.call("files__read_text_file", {"path": str(shared / "hello.txt")})
            assert read.text() == "hello from the npm server"

            with pytest.raises(UnknownToolError):
                await registry.call("nobody__nothing", {})
            tool = next(t for t in (await registry.catalogue()).tools if t["function"]["name"] == "ours_http__add")
            assert tool["function"]["parameters"]["required"] == ["a", "b"]


async def test_a_killed_server_comes_back_and_its_tools_with_it(write_config: Any) -> None:
    config = write_config({"flaky": peer_server(), "steady": peer_server()})
    with anyio.fail_after(60):
        async with Registry(load_servers(config), backoff_first=0.2) as registry:
            flaky = await connection_named(registry, "flaky")
            first_pid = int((await registry.call("flaky__pid", {})).text())
            os.kill(first_pid, signal.SIGKILL)

            await flaky.wait_until(lambda c: c.status is not Status.CONNECTED)
            assert not [e for e in await registry.catalogue() if e.spec.server == "flaky"]
            with anyio.fail_after(2), pytest.raises(ServerUnavailable, match="flaky"):
                await registry.call_server_tool("flaky", "pid", {})
            assert (await registry.call("steady__echo", {"text": "still here"})).text() == "still here"

            await flaky.wait_until(connected)
            assert int((await registry.call("flaky__pid", {})).text()) != first_pid
            assert "flaky__echo" in {e.name for e in await registry.catalogue()}


async def test_a_crash_during_a_call_is_reported_and_the_server_restarts(write_config: Any) -> None:
    config = write_config({"crashy": peer_server()})
    with anyio.fail_after(60):
        async with Registry(load_servers(config), backoff_first=0.2) as registry:
            crashy = await connection_named(registry, "crashy")
            with pytest.raises(ServerUnavailable, match="crashy"):
                await registry.call("crashy__crash", {})
            await crashy.wait_until(lambda c: c.status is Status.FAILED)
            await crashy.wait_until(connected)
            assert (await registry.call("crashy__add", {"a": 2, "b": 3})).text() == "5"


async def test_a_hung_tool_times_out_is_cancelled_and_the_session_stays_usable(
    write_config: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "cancelled.txt"
    entry = peer_server() | {"timeout": 1, "env": {"TEST_SERVER_MARKER": str(marker)}}
    config = write_config({"slow": entry})
    async with Registry(load_servers(config)) as registry:
        with anyio.fail_after(5):
            result = await registry.call("slow__sleep", {"seconds": 60})
        assert result.is_error and "timed out after 1 s" in result.text()
        with anyio.fail_after(5):
            assert (await registry.call("slow__echo", {"text": "alive"})).text() == "alive"
            while not marker.exists():  # noqa: ASYNC110 - another process writes it when it sees the cancellation
                await anyio.sleep(0.05)
        assert marker.read_text() == "cancelled\n"


async def test_broken_entries_leave_the_others_working(write_config: Any) -> None:
    config = write_config(
        {
            "missing": {"command": "/nonexistent/mcp-server"},
            "refused": {"url": "http://127.0.0.1:9/mcp"},
            "garbage": peer_server("--garbage"),
            "good": peer_server(),
        }
    )
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            status = {c.name: (c.status, c.error or "") for c in await registry.connections()}
            assert status["good"] == (Status.CONNECTED, "")
            assert status["missing"][0] is Status.FAILED and "command not found" in status["missing"][1]
            assert status["refused"][0] is Status.FAILED and "cannot connect" in status["refused"][1]
            assert status["garbage"][0] is Status.FAILED and "pretend crash" in status["garbage"][1]
            assert (await registry.call("good__add", {"a": 1, "b": 1})).text() == "2"
            assert {e.spec.server for e in await registry.catalogue()} == {"good"}


async def test_chat_scope_gives_each_chat_its_own_process(write_config: Any, tmp_path: Path) -> None:
    entry = peer_server() | {
        "scope": "chat",
        "env": {"WORKSPACE": str(tmp_path / "ws-${CHAT_ID}")},
        "idle_timeout": 1,
    }
    config = write_config({"mine": entry})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            pid_7 = (await registry.call("mine__pid", {}, chat_id=7)).text()
            assert (await registry.call("mine__pid", {}, chat_id=7)).text() == pid_7
            workspace = await registry.call("mine__env", {"name": "WORKSPACE"}, chat_id=8)
            assert workspace.text() == str(tmp_path / "ws-8")
            pid_8 = (await registry.call("mine__pid", {}, chat_id=8)).text()
            assert pid_7 != pid_8

            instance = await connection_named(registry, "mine", chat_id=8)
            await instance.wait_until(lambda c: c.status is Status.STOPPED)  # idle for a second
            assert not process_alive(int(pid_8))
            assert (await registry.call("mine__pid", {}, chat_id=8)).text() not in (pid_7, pid_8)


@pytest.mark.parametrize("mode", ["modern", "legacy"])
async def test_a_changed_tool_list_is_picked_up(write_config: Any, mode: str) -> None:
    config = write_config({"growing": peer_server(*(["--legacy"] if mode == "legacy" else []))})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            growing = await connection_named(registry, "growing")
            assert (await registry.call("growing__grow", {"name": "fresh"})).text() == "added fresh"
            await growing.wait_until(lambda c: any(tool.name == "fresh" for tool in c.tools))
            assert (await registry.call("growing__fresh", {})).text() == "fresh works"


async def test_results_keep_errors_images_and_structure(write_config: Any) -> None:
    config = write_config({"ours": peer_server()})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            failed = await registry.call("ours__fail", {"message": "disk on fire"})
            assert failed.is_error and "disk on fire" in failed.text()
            picture = await registry.call("ours__image", {})
            [part] = picture.parts
            assert isinstance(part, BinaryPart) and part.mime_type == "image/png" and part.size > 8
            big = (await registry.call("ours__big", {"size": 50_000})).text()
            assert big == "x" * 50_000  # cut once, by the engine, to the room it has in the context
            stats = await registry.call("ours__stats", {})
            assert stats.structured == {"files": 3, "bytes": 1024} and '"files": 3' in stats.text()
            document = await registry.call("ours__document", {})
            assert document.text() == "[resource file:///notes.md]\n# Notes"
            broken = await registry.call("ours__mismatch", {})
            assert broken.is_error and "Invalid structured content" in broken.text()
            bad_args = await registry.call("ours__add", {"a": "not a number"})
            assert bad_args.is_error


async def test_shutdown_leaves_no_server_process(write_config: Any, tmp_path: Path) -> None:
    config = write_config({"ours": peer_server(), "files": npm_server("mcp-server-filesystem", str(tmp_path))})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            pid = int((await registry.call("ours__pid", {})).text())
            assert process_alive(pid)
            node_pids = _children_named("node")
    assert not process_alive(pid)
    assert node_pids and not [p for p in node_pids if process_alive(p)]


def _children_named(name: str) -> list[int]:
    own = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if name in comm and rest[1] == own:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
async def test_a_remote_server_that_goes_away_fails_fast_and_is_reconnected(transport: str) -> None:
    port = free_port()
    server = start_http_server(PEER, transport=transport, port=port)
    url = f"http://127.0.0.1:{port}/" + ("sse" if transport == "sse" else "mcp")
    configs = parse_servers({"mcpServers": {"remote": {"url": url}}}, source="test", environ={})
    try:
        with anyio.fail_after(30):
            async with Registry(configs, backoff_first=0.2) as registry:
                remote = await connection_named(registry, "remote")
                assert (await registry.call("remote__echo", {"text": "one"})).text() == "one"
                server.kill()
                server.wait()
                with anyio.fail_after(3), pytest.raises(ServerUnavailable, match="remote"):
                    await registry.call("remote__echo", {"text": "two"})
                assert remote.status is not Status.CONNECTED
                assert not await registry.catalogue()

                server = start_http_server(PEER, transport=transport, port=port)
                await remote.wait_until(connected)
                assert (await registry.call("remote__echo", {"text": "three"})).text() == "three"
    finally:
        server.kill()
        server.wait()


async def test_a_server_that_stops_reading_is_replaced_within_its_timeout(write_config: Any) -> None:
    config = write_config({"frozen": peer_server() | {"timeout": 1}})
    async with Registry(load_servers(config), backoff_first=0.2) as registry:
        frozen = await connection_named(registry, "frozen")
        pid = int((await registry.call("frozen__pid", {})).text())
        os.kill(pid, signal.SIGSTOP)  # alive, reading nothing: its stdin pipe fills up
        try:
            with anyio.fail_after(1 + 5 + 1), pytest.raises(ServerUnavailable, match="stopped reading requests"):
                await registry.call("frozen__echo", {"text": "x" * 1_000_000})
            assert not await registry.catalogue()
            with anyio.fail_after(1), pytest.raises(ServerUnavailable, match="'frozen' is not connected"):
                await registry.call("frozen__echo", {"text": "the model still has the old tool list"})
        finally:
            os.kill(pid, signal.SIGCONT)
        with anyio.fail_after(20):
            await frozen.wait_until(connected)
        assert int((await registry.call("frozen__pid", {})).text()) != pid


async def test_cancelling_the_start_leaves_no_process(write_config: Any) -> None:
    config = write_config({"a": peer_server(), "b": peer_server()})
    with anyio.move_on_after(0.2) as scope:
        async with Registry(load_servers(config)):
            pytest.fail("the servers cannot have started within 0.2 s")
    assert scope.cancelled_caught
    assert not _children_named("python")


async def test_per_chat_instances_start_once_and_are_capped(write_config: Any, tmp_path: Path) -> None:
    workspace = str(tmp_path / "ws-${CHAT_ID}")
    entry = peer_server() | {"scope": "chat", "cwd": workspace, "env": {"PYTHONPATH": str(ROOT)}}
    config = write_config({"mine": entry})
    with anyio.fail_after(30):
        async with Registry(load_servers(config), max_chat_instances=2) as registry:
            first, second = await gather(registry.call("mine__pid", {}, 1), registry.call("mine__pid", {}, 1))
            assert first.text() == second.text()  # the second caller waited for the instance the first started
            assert (await registry.call("mine__cwd", {}, chat_id=1)).text() == str(tmp_path / "ws-1")
            one = await connection_named(registry, "mine", chat_id=1)
            await registry.call("mine__pid", {}, 2)
            await registry.call("mine__pid", {}, 3)  # a third instance stops the least recently used one, chat 1's
            await one.wait_until(lambda c: c.status is Status.STOPPED)
            assert (await registry.call("mine__cwd", {}, chat_id=3)).text() == str(tmp_path / "ws-3")


async def test_an_instance_busy_with_a_call_is_not_stopped_as_idle(write_config: Any) -> None:
    config = write_config({"mine": peer_server() | {"scope": "chat", "idle_timeout": 0.5, "timeout": 10}})
    with anyio.fail_after(30):
        async with Registry(load_servers(config)) as registry:
            result = await registry.call("mine__sleep", {"seconds": 2}, chat_id=5)
            assert (result.is_error, result.text()) == (False, "slept 2.0")


async def gather(*awaitables: Any) -> list[Any]:
    results: list[Any] = [None] * len(awaitables)

    async def run(index: int, awaitable: Any) -> None:
        results[index] = await awaitable

    async with anyio.create_task_group() as tasks:
        for index, awaitable in enumerate(awaitables):
            tasks.start_soon(run, index, awaitable)
    return results


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_tool_calls_and_server_state_reach_the_metrics_with_bounded_labels(write_config: Any) -> None:
    config = write_config({"metered": peer_server()})
    calls = "mcp_tool_calls_total"  # the server's name is this test's own: its series start at 0
    unknown_before = sample(calls, mcp_name="other", tool_name="other", status="unknown")
    with anyio.fail_after(60):
        async with Registry(load_servers(config), backoff_first=0.2) as registry:
            metered = await connection_named(registry, "metered")
            assert sample("mcp_server_up", mcp_name="metered") == 1
            assert (await registry.call("metered__add", {"a": 1, "b": 2})).text() == "3"
            assert (await registry.call("metered__fail", {"message": "no"})).is_error
            assert (await registry.call_server_tool("metered", "no_such_tool_name", {})).is_error
            with pytest.raises(UnknownToolError):
                await registry.call("nobody__nothing", {})
            os.kill(int((await registry.call("metered__pid", {})).text()), signal.SIGKILL)
            await metered.wait_until(lambda c: c.status is not Status.CONNECTED)
            assert sample("mcp_server_up", mcp_name="metered") == 0
            with pytest.raises(ServerUnavailable):
                await registry.call_server_tool("metered", "pid", {})
            await metered.wait_until(connected)
            assert sample("mcp_server_up", mcp_name="metered") == 1
    assert sample(calls, mcp_name="metered", tool_name="add", status="ok") == 1
    assert sample(calls, mcp_name="metered", tool_name="fail", status="error") == 1
    assert sample(calls, mcp_name="metered", tool_name="other", status="error") == 1  # a name no listing has
    assert sample(calls, mcp_name="metered", tool_name="other", status="unavailable") == 1
    assert sample(calls, mcp_name="other", tool_name="other", status="unknown") == unknown_before + 1
    assert sample("mcp_tool_call_duration_seconds_count", mcp_name="metered", tool_name="add") >= 1
    assert sample("mcp_server_up", mcp_name="metered") == 0  # stopped with the registry
