"""Shared fixtures: the anyio backend, free ports, config files, and MCP test servers over HTTP."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "node_modules" / ".bin"
POSTGRES_URL = os.environ.get("MCPBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://root@127.0.0.1:5432/test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Block until something accepts connections on the port; fail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def peer_server(*extra: str) -> dict[str, Any]:
    """A stdio entry for mcp_servers.json running our test server."""
    return {"command": sys.executable, "args": ["-m", "tests.peers.mcp_test_server", *extra], "cwd": str(ROOT)}


def npm_server(name: str, *args: str) -> dict[str, Any]:
    """A stdio entry for an npm server installed by package.json."""
    binary = NODE_BIN / name
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `npm ci` (the README's test command does)")
    return {"command": str(binary), "args": list(args)}


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    """Write `{"mcpServers": servers}` to a file and return its path."""

    def write(servers: dict[str, Any], name: str = "mcp_servers.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
        return path

    return write


def start_http_server(module: str, *args: str, transport: str, port: int) -> subprocess.Popen[bytes]:
    """`python -m MODULE ARGS --transport T --port P` from the repository root, listening when this returns."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args, "--transport", transport, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def http_server() -> Iterator[Any]:
    """Start an MCP server module over HTTP: `start(module, *args, transport="streamable-http")` returns its
    URL (/mcp, or /sse for SSE); every server started is stopped after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(module: str, *args: str, transport: str = "streamable-http") -> str:
        port = free_port()
        processes.append(start_http_server(module, *args, transport=transport, port=port))
        return f"http://127.0.0.1:{port}/" + ("sse" if transport == "sse" else "mcp")

    yield start
    for process in processes:
        stop_process(process)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> str:
    """This machine's PostgreSQL; skips when absent, but fails when MCPBOT_REQUIRE_SERVICES=1 (CI)."""
    if not _reachable("127.0.0.1", 5432):
        reason = "PostgreSQL is not running on 127.0.0.1:5432"
        if os.environ.get("MCPBOT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and MCPBOT_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    return POSTGRES_URL
