"""What one filesystem tool call can cost at the default limits: wall time, the server's peak RSS and the disk it
uses, for the worst cases of issue 10 (the first change's count of 100,000 entries, a 1 MiB write, a recursive
delete of 10,000 entries, the depth check of moving a 100,000-entry directory). Each case gets a fresh server over
stdio. Run: `python -m bench.filesystem_limits_bench [--entries 100000]`.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parent.parent


def fill(top: Path, entries: int, per_directory: int = 100) -> None:
    """`entries` entries under `top`: directories of `per_directory - 1` small files each."""
    made = 0
    index = 0
    while made < entries:
        directory = top / f"d{index:05}"
        directory.mkdir(parents=True)
        made += 1
        for number in range(min(per_directory - 1, entries - made)):
            (directory / f"f{number:03}.txt").write_bytes(b"x" * 10)
            made += 1
        index += 1


def fill_and_make(top: Path, entries: int, directory: Path) -> None:
    fill(top, entries)
    directory.mkdir()


def server_pid(root: Path) -> int:
    """The server process serving `root` (a child of ours, found by its command line)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"servers.filesystem" in command and str(root).encode() in command:
            return int(entry.name)
    raise RuntimeError("the server process was not found")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def disk_mib(top: Path) -> float:
    total = 0
    for directory, dirs, files in os.walk(top):
        for name in dirs + files:
            total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total / 1024 / 1024


def reset(root: Path, prepare: Callable[[], None]) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    prepare()
    os.sync()  # files already on the disk, as in a workspace in use: unlinking them then costs its real price


async def case(name: str, root: Path, prepare: Callable[[], None], act: Callable[[Client], Awaitable[Any]]) -> None:
    reset(root, prepare)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "servers.filesystem", "--root", str(root)], cwd=str(ROOT)
    )
    async with Client(params) as client:
        await client.list_tools()
        pid = server_pid(root)
        before = peak_rss_mib(pid)
        disk_before = disk_mib(root)
        started = time.perf_counter()
        result = await act(client)
        wall = time.perf_counter() - started
        after = peak_rss_mib(pid)
    text = "\n".join(getattr(part, "text", "") for part in result.content)[:110]
    print(
        f"| {name} | {wall * 1000:.0f} ms | {before:.0f} -> {after:.0f} MiB | "
        f"{disk_before:.1f} -> {disk_mib(root):.1f} MiB | {'refused: ' if result.is_error else ''}{text} |"
    )


async def bench(entries: int, base: Path) -> None:
    root = base / "ws"
    print("| call | wall | server peak RSS (start -> after) | workspace disk | answer |")
    print("|---|---|---|---|---|")
    await case(
        "write_file, 1 MiB, into an empty workspace",
        root,
        lambda: None,
        lambda client: client.call_tool("write_file", {"file_path": "big.txt", "content": "x" * 1024 * 1024}),
    )
    await case(
        f"first write_file with {entries:,} entries (includes the count)",
        root,
        lambda: fill(root, entries - 1),
        lambda client: client.call_tool("write_file", {"file_path": "new.txt", "content": "x" * 1024 * 1024}),
    )

    await case(
        f"first delete_file with {entries:,} entries (the count alone)",
        root,
        lambda: fill(root, entries),
        lambda client: client.call_tool("delete_file", {"file_path": "d00000/f000.txt"}),
    )
    await case(
        "delete_directory recursive, 10,000 entries",
        root,
        lambda: fill(root / "tree", 10_000),
        lambda client: client.call_tool("delete_directory", {"directory": "tree", "recursive": True}),
    )
    await case(
        f"delete_directory recursive, {entries:,} entries (stops at 10,000 and counts what is left)",
        root,
        lambda: fill(root / "tree", entries - 1),
        lambda client: client.call_tool("delete_directory", {"directory": "tree", "recursive": True}),
    )
    await case(
        f"move_file of a directory of {entries - 2:,} entries (depth check)",
        root,
        lambda: fill_and_make(root / "tree", entries - 2, root / "into"),
        lambda client: client.call_tool("move_file", {"source": "tree", "destination": "into/tree"}),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fs-limits-bench-") as base:
        anyio.run(bench, options.entries, Path(base))


if __name__ == "__main__":
    main()
