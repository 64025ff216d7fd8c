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
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def bench(chats: int, workspaces: Path) -> None:
    root = f"{workspaces}/${{CHAT_ID}}"
    files = {"command": sys.executable, "args": ["-m", "servers.filesystem", "--root", root], "scope": "chat"}
    entries = {
        "filesystem": files,
        "database": {"command": sys.executable, "args": ["-m", "servers.database", "--url", f"sqlite:///{DEMO}"]},
    }
    configs = parse_servers({"mcpServers": entries}, source="bench", environ=os.environ)
    started = time.perf_counter()
    async with Registry(configs) as registry:

        async def talk(chat_id: int) -> None:
            await registry.catalogue(chat_id)
            await registry.instructions(chat_id)

        async with anyio.create_task_group() as tasks:
            for chat_id in range(1, chats + 1):
                tasks.start_soon(talk, chat_id)
        seconds = time.perf_counter() - started
        pids = children()
        child_rss = sum(rss_mib(pid) for pid in pids)
        child_cpu = sum(cpu_seconds(pid) for pid in pids)
        print(f"{chats} talking chats: {seconds:.1f} s until every chat had its catalogue")
        print(f"  server processes: {len(pids)}, their memory {child_rss:.0f} MiB (RSS), their CPU {child_cpu:.1f} s")
        print(f"  the host itself: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB peak RSS")
        print(f"  workspaces created: {len(os.listdir(workspaces))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=200)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        anyio.run(bench, options.chats, Path(folder))


if __name__ == "__main__":
    main()
