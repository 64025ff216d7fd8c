"""Our servers over HTTP refuse requests whose Host or Origin is not theirs (DNS-rebinding protection),
on loopback and on a wildcard address alike, and write nothing to stdout (uvicorn's access log goes to stderr)."""

import subprocess
import sys

import httpx2
import pytest

from tests.conftest import ROOT, free_port, wait_for_port

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.mark.parametrize("listen", ["127.0.0.1", "0.0.0.0"])
def test_only_the_servers_own_host_names_are_accepted(listen: str) -> None:
    port = free_port()
    command = [sys.executable, "-m", "servers.template", "--transport", "streamable-http", "--host", listen]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--allowed-host", "bot.example.org"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    stdout = b""
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/mcp"

        def post(**headers: str) -> int:
            return httpx2.post(url, json=INITIALIZE, headers=HEADERS | headers, timeout=10).status_code

        assert post() == 200
        assert post(Host="bot.example.org") == 200
        assert post(Host="attacker.example") == 421
        assert post(Origin="http://attacker.example") == 403
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=10)
    assert stdout == b"", "logs go to stderr only"
