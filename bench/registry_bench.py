"""Benchmark the MCP registry against the raw SDK on our test peer: call_tool round trips over stdio and
Streamable HTTP, and the start-up of 1 versus 8 stdio servers. Run: `python -m bench.registry_bench`.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

from host.log import configure_logging
from host.mcp.config import ServerConfig, parse_servers
from host.mcp.connection import Status
from host.mcp.registry import Registry
from host.mcp.tools import ToolResult

ROOT = Path(__file__).resolve().parent.parent
SERVER_ARGS = ["-m", "tests.peers.mcp_test_server"]
ECHO_ARGS = {"text": "hi"}
RAW = "raw SDK client.call_tool"
BLOCK = 100  # calls per turn; the variants take turns so that drift on a busy machine hits them all alike

Call = Callable[[], Awaitable[Any]]


def configs(entries: dict[str, dict[str, Any]]) -> list[ServerConfig]:
    return parse_servers({"mcpServers": entries}, source="bench", environ=os.environ)


def stdio_entry() -> dict[str, Any]:
    return {"command": sys.executable, "args": SERVER_ARGS, "cwd": str(ROOT)}


async def measure(variants: dict[str, Call], calls: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call for each variant, after `warmup` calls each; variants alternate in blocks."""
    for call in variants.values():
        result = await call()
        text = result.text() if isinstance(result, ToolResult) else result.content[0].text
        assert text == "hi", f"echo returned {text!r}"
        for _ in range(warmup):
            await call()
    times: dict[str, list[float]] = {name: [] for name in variants}
    order = list(variants)
    while len(times[order[0]]) < calls:
        for name in order:
            call, samples = variants[name], times[name]
            for _ in range(min(BLOCK, calls - len(samples))):
                started = time.perf_counter()
                await call()
                samples.append(time.perf_counter() - started)
        order.append(order.pop(0))
    return times


def call_variants(raw: Client, registry: Registry) -> dict[str, Call]:
    return {
        RAW: lambda: raw.call_tool("echo", ECHO_ARGS),
        "registry.call": lambda: registry.call("bench__echo", ECHO_ARGS),
        "registry.call_server_tool": lambda: registry.call_server_tool("bench", "echo", ECHO_ARGS),
    }


async def bench_stdio(calls: int, warmup: int) -> dict[str, list[float]]:
    params = StdioServerParameters(command=sys.executable, args=SERVER_ARGS, cwd=str(ROOT))
    async with Client(params) as raw, Registry(configs({"bench": stdio_entry()})) as registry:
        return await measure(call_variants(raw, registry), calls, warmup)


async def bench_http(calls: int, warmup: int) -> dict[str, list[float]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, *SERVER_ARGS, "--transport", "streamable-http", "--port", str(port)]
    server = await anyio.open_process(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(30):
            while True:
                try:
                    await (await anyio.connect_tcp("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    assert server.returncode is None, f"the HTTP server exited with {server.returncode}"
                    await anyio.sleep(0.05)
        url = f"http://127.0.0.1:{port}/mcp"
        async with Client(url) as raw, Registry(configs({"bench": {"type": "http", "url": url}})) as registry:
            return await measure(call_variants(raw, registry), calls, warmup)
    finally:
        server.terminate()
        await server.wait()


async def startup(count: int) -> float:
    """Seconds for `async with Registry(...)` to enter with `count` stdio servers, all connected."""
    entries = {f"bench{index}": stdio_entry() for index in range(count)}
    started = time.perf_counter()
    async with Registry(configs(entries)) as registry:
        elapsed = time.perf_counter() - started
        failed = [c.name for c in await registry.connections() if c.status is not Status.CONNECTED]
        assert not failed, f"servers not connected: {failed}"
    return elapsed


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.3f}"


async def main(options: argparse.Namespace) -> None:
    print(f"call_tool round trip, echo(text='hi'): {options.calls} calls each after {options.warmup} warm-up (ms)")
    print(f"{'transport':<10} {'path':<26} {'median':>8} {'p95':>8}  overhead vs raw SDK (median)")
    for transport, bench in (("stdio", bench_stdio), ("http", bench_http)):
        times = await bench(options.calls, options.warmup)
        baseline = statistics.median(times[RAW])
        for name, samples in times.items():
            median, p95 = statistics.median(samples), statistics.quantiles(samples, n=20)[18]
            overhead = "" if name == RAW else f"{(median / baseline - 1) * 100:+.1f}%"
            print(f"{transport:<10} {name:<26} {ms(median)} {ms(p95)}  {overhead}".rstrip())
    print(f"\nstart-up: `async with Registry(...)` until all connected, median of {options.repeats} (s)")
    one = statistics.median([await startup(1) for _ in range(options.repeats)])
    eight = statistics.median([await startup(8) for _ in range(options.repeats)])
    print(f"1 stdio server   {one:7.3f}")
    print(f"8 stdio servers  {eight:7.3f}   ratio {eight / one:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per variant (default 2000)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed calls per variant first (default 100)")
    parser.add_argument("--repeats", type=int, default=3, help="start-ups per server count (default 3)")
    parser.add_argument("--log-level", default="WARNING", help="host log level (INFO logs every call to stderr)")
    options = parser.parse_args()
    configure_logging(options.log_level)
    anyio.run(main, options)
