"""Fixtures for our own MCP servers: running them over stdio and HTTP, and MCP Inspector's CLI."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import StdioServerParameters

from tests.conftest import NODE_BIN, ROOT, free_port, wait_for_port


def stdio_params(module: str, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    """`python -m servers.X args...` as an SDK stdio target, run from the repository root."""
    return StdioServerParameters(command=sys.executable, args=["-m", module, *args], cwd=str(ROOT), env=env)


@pytest.fixture
def http_server() -> Iterator[Any]:
    """Start `python -m MODULE ARGS --transport streamable-http --port P`; returns the URL of its /mcp."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(module: str, *args: str, transport: str = "streamable-http") -> str:
        port = free_port()
        command = [sys.executable, "-m", module, *args, "--transport", transport, "--port", str(port)]
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(process)
        wait_for_port(port, process)
        return f"http://127.0.0.1:{port}/" + ("sse" if transport == "sse" else "mcp")

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def inspector(tmp_path: Path, *args: str) -> Any:
    """Run MCP Inspector's CLI (`mcp-inspector --cli ARGS`) and return the JSON it prints."""
    binary = NODE_BIN / "mcp-inspector"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `npm ci` (the README's test command does)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    done = subprocess.run([str(binary), "--cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr or done.stdout
    return json.loads(done.stdout)
