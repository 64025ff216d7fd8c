"""Processes and memory that talking chats cost with a `scope: "chat"` filesystem server (the shipped config's
servers): N chats at once each get the catalogue and the instructions, as the engine does every turn, and none
calls a tool. Run: `python -m bench.chat_servers_bench [--chats 200]`.
"""

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import anyio

from host.log import configure_logging
from host.mcp.config import parse_servers
from host.mcp.registry import Registry

DEMO = Path(__file__).resolve().parent.parent / "servers" / "database" / "demo.db"


def children() -> list[int]:
    own = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        if stat and stat[stat.rindex(")") + 2 :].split()[1] == own:
            found.append(int(entry.name))
    return found


def rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # it ended meanwhile
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def bench(chats: int, workspaces: Path) -> None:
    root = f"{workspaces}/${{CHAT_ID}}"
    files = {"command": sys.executable, "args": ["-m", "servers.filesystem", "--root", root], "scope": "chat"}
    entries = {
        "filesystem": files,
        "database": {"command": sys.executable, "args": ["-m", "servers.database", "--url", f"sqlite:///{DEMO}"]},
    }
    configs = parse_servers({"mcpServers": entries}, source="bench", environ=os.environ)
    peak = {"processes": 0, "rss": 0.0}

    async def sample() -> None:
        while True:
            pids = children()
            peak["processes"] = max(peak["processes"], len(pids))
            peak["rss"] = max(peak["rss"], sum(rss_mib(pid) for pid in pids))
            await anyio.sleep(0.1)

    with_tools = 0
    started = time.perf_counter()
    async with Registry(configs) as registry, anyio.create_task_group() as sampler:
        sampler.start_soon(sample)

        async def talk(chat_id: int) -> None:
            nonlocal with_tools
            catalogue = await registry.catalogue(chat_id)
            await registry.instructions(chat_id)
            with_tools += any(entry.spec.server == "filesystem" for entry in catalogue)

        async with anyio.create_task_group() as tasks:
            for chat_id in range(1, chats + 1):
                tasks.start_soon(talk, chat_id)
        seconds = time.perf_counter() - started
        sampler.cancel_scope.cancel()
    children_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{chats} talking chats at once: {seconds:.1f} s until every chat had its catalogue")
    print(f"  chats whose catalogue had the filesystem tools: {with_tools}")
    print(f"  server processes: {peak['processes']} at most, {peak['rss']:.0f} MiB RSS together at most")
    print(f"  CPU of all server processes: {children_cpu.ru_utime + children_cpu.ru_stime:.1f} s")
    print(f"  the host itself: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak RSS")
    print(f"  workspaces created: {len(os.listdir(workspaces))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=200)
    options = parser.parse_args()
    configure_logging("WARNING", "console")
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(bench, options.chats, Path(folder))


if __name__ == "__main__":
    main()
