"""The filesystem server's resource limits over stdio: the workspace quota of bytes, entries and depth, and the
bounded, confined recursive delete_directory. Small limits are passed as options, so nothing here fills a disk.
"""

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from servers.filesystem.__main__ import parse_options
from tests.servers.conftest import stdio_params

pytestmark = pytest.mark.anyio

SECRET = "TOP-SECRET-quota"


@asynccontextmanager
async def serving(root: Path, *options: str) -> AsyncIterator[Client]:
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.filesystem", "--root", str(root), *options)) as client:
            yield client


async def call(client: Client, tool: str, **arguments: Any) -> tuple[bool, str]:
    """(refused, text) of one tool call."""
    with anyio.fail_after(10):
        result = await client.call_tool(tool, arguments)
    return result.is_error, "\n".join(getattr(part, "text", "") for part in result.content)


async def ok(client: Client, tool: str, **arguments: Any) -> str:
    refused, text = await call(client, tool, **arguments)
    assert not refused, text
    return text


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    was_refused, text = await call(client, tool, **arguments)
    assert was_refused, text
    return text


def make_deep(top: Path, levels: int) -> None:
    """`levels` nested directories `d/d/d/...` under `top`, made with fds (a long path would pass PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with open(os.open("leaf.txt", os.O_WRONLY | os.O_CREAT, dir_fd=fd), "w") as leaf:
            leaf.write("leaf")
    finally:
        os.close(fd)


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """`chattr +i`: not even root may change or remove it (how these tests make a system call fail part way)."""
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


# Bytes


async def test_a_write_over_the_byte_quota_is_refused_with_the_room_left(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "old.txt").write_text("o" * 1000)  # there before the server started: counted
    async with serving(root, "--max-workspace-bytes", "3000") as client:
        assert await ok(client, "write_file", file_path="a.txt", content="a" * 1500) == "wrote 1500 bytes to a.txt"
        text = await refused(client, "write_file", file_path="new/dir/b.txt", content="b" * 1000)
        assert "the workspace quota is 3000 bytes and 500 are left; this write needs 1000" in text
        assert not (root / "new").exists()  # a refused write creates no directory either
        await ok(client, "write_file", file_path="a.txt", content="a" * 2000)  # replacing needs only the growth
        text = await refused(client, "write_file", file_path="c.txt", content="c")
        assert "and 0 are left; this write needs 1" in text
        await ok(client, "delete_file", file_path="old.txt")
        await ok(client, "write_file", file_path="c.txt", content="c" * 1000)
    assert sorted(os.listdir(root)) == ["a.txt", "c.txt"]


async def test_concurrent_writes_never_overshoot_the_quota(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    outcomes: list[bool] = []
    async with serving(root, "--max-workspace-bytes", "10000") as client:

        async def write(index: int) -> None:
            was_refused, _ = await call(client, "write_file", file_path=f"f{index}.txt", content="x" * 1000)
            outcomes.append(was_refused)

        async with anyio.create_task_group() as group:
            for index in range(25):
                group.start_soon(write, index)
    assert outcomes.count(False) == 10 and outcomes.count(True) == 15
    assert sum(path.stat().st_size for path in root.iterdir()) == 10000


async def test_a_change_that_fails_part_way_makes_the_server_count_again(tmp_path: Path) -> None:
    """After a failed change the total is unknown: the next change counts the workspace, seeing outside changes."""
    root = tmp_path / "ws"
    (root / "locked").mkdir(parents=True)
    async with serving(root, "--max-workspace-bytes", "3000") as client:
        await ok(client, "write_file", file_path="a.txt", content="a" * 1000)  # counted: 1000 bytes used
        (root / "outside-change.bin").write_bytes(b"x" * 1500)  # not seen by the running total
        with immutable(root / "locked"):
            text = await refused(client, "write_file", file_path="locked/b.txt", content="b")
            assert "operation not permitted" in text
        text = await refused(client, "write_file", file_path="c.txt", content="c" * 1000)
        assert "the workspace quota is 3000 bytes and 500 are left" in text


# Entries


async def test_entries_count_files_directories_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "one.txt").write_text("1")
    os.symlink("one.txt", root / "link")
    async with serving(root, "--max-workspace-entries", "5") as client:
        assert await ok(client, "create_directory", directory="a/b/c") == "directory a/b/c created"
        text = await refused(client, "write_file", file_path="two.txt", content="2")
        assert "the workspace may hold 5 entries (files, directories, symlinks) and 0 are left; this needs 1" in text
        assert "this needs 2" in await refused(client, "create_directory", directory="x/y")
        assert "already existed" in await ok(client, "create_directory", directory="a/b")  # costs nothing
        await ok(client, "move_file", source="one.txt", destination="a/one.txt")  # neither does a move
        await ok(client, "write_file", file_path="a/one.txt", content="replaced")  # nor replacing a file
        await ok(client, "delete_file", file_path="link")
        await ok(client, "write_file", file_path="two.txt", content="2")
        await ok(client, "delete_directory", directory="a/b/c")
        await ok(client, "create_directory", directory="d")
    assert not (root / "two.txt").is_symlink() and (root / "d").is_dir() and not (root / "x").exists()


async def test_a_workspace_already_over_the_quota_is_counted_again_as_it_shrinks(tmp_path: Path) -> None:
    """The start-up count stops after max entries + 1: only a recount after deletes can say how many are left."""
    root = tmp_path / "ws"
    root.mkdir()
    for index in range(6):
        (root / f"f{index}.txt").write_text("x")
    async with serving(root, "--max-workspace-entries", "3") as client:
        assert "and 0 are left" in await refused(client, "create_directory", directory="new")
        for index in range(3):
            await ok(client, "delete_file", file_path=f"f{index}.txt")
        assert "and 0 are left" in await refused(client, "create_directory", directory="new")  # 3 of 3 now
        await ok(client, "delete_file", file_path="f3.txt")
        assert await ok(client, "create_directory", directory="new") == "directory new created"


# Depth


async def test_nothing_is_made_deeper_than_the_depth_limit(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with serving(root, "--max-depth", "4") as client:
        await ok(client, "create_directory", directory="1/2/3/4")
        text = await refused(client, "create_directory", directory="1/2/3/4/5")
        assert text.endswith("'1/2/3/4/5' would be 5 levels deep; the workspace allows at most 4")
        assert "would be 5 levels deep" in await refused(client, "write_file", file_path="1/2/3/4/f.txt", content="")
        await ok(client, "write_file", file_path="1/2/3/f.txt", content="")  # level 4 is allowed
        await ok(client, "create_directory", directory="x/y")
        text = await refused(client, "move_file", source="x", destination="1/2/3/x")  # y would be at level 5
        assert "moving 'x' to '1/2/3/x' would put entries more than 4 levels deep" in text
        assert "would be 5 levels deep" in await refused(client, "move_file", source="x", destination="1/2/3/4/x")
        await ok(client, "move_file", source="x", destination="1/2/x")  # y at level 4
        text = await refused(client, "move_file", source="1/2/3/f.txt", destination="1/2/x/y/f.txt")
        assert text.endswith("'1/2/x/y/f.txt' would be 5 levels deep; the workspace allows at most 4")
    assert (root / "1/2/x/y").is_dir() and (root / "1/2/3/f.txt").is_file() and not (root / "1/2/3/4/5").exists()


async def test_the_issue_attack_of_two_thousand_levels_stops_at_64(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    async with serving(root) as client:
        text = await refused(client, "create_directory", directory="a/" * 2034)
        assert "would be 2034 levels deep; the workspace allows at most 64" in text
        await ok(client, "create_directory", directory="a/" * 64)  # level 64 is the last one allowed
        assert "65 levels deep" in await refused(client, "write_file", file_path="a/" * 64 + "f", content="")
        assert "65 levels deep" in await refused(client, "create_directory", directory="a/" * 65)
    assert (root / ("a/" * 64)).is_dir() and not (root / ("a/" * 65)).exists()


def test_depth_and_quota_options(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    options = parse_options(["--root", str(tmp_path)])
    assert (options.max_workspace_bytes, options.max_workspace_entries) == (1024**3, 100_000)
    assert (options.max_depth, options.max_delete_entries) == (64, 10_000)
    with pytest.raises(SystemExit):
        parse_options(["--root", str(tmp_path), "--max-depth", "129"])
    assert "must be at most 128, not 129" in capsys.readouterr().err


# Recursive delete


def build_tree(base: Path) -> Path:
    """A workspace whose `tree` holds files, nested directories and symlinks, next to a secret outside."""
    root = base / "ws"
    (root / "tree" / "sub" / "deeper").mkdir(parents=True)
    (root / "kept").mkdir()
    (root / "kept" / "keep.txt").write_text("kept")
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text(SECRET)
    for index in range(4):
        (root / "tree" / f"f{index}.txt").write_text("x" * 10)
    (root / "tree" / "sub" / "deeper" / "g.txt").write_text("g")
    os.symlink(base / "outside", root / "tree" / "out_dir")  # removed, never followed
    os.symlink("../../kept", root / "tree" / "sub" / "in_dir")
    os.symlink(base / "outside" / "secret.txt", root / "tree" / "out_file")
    return root


async def test_recursive_delete_removes_links_not_their_targets(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    async with serving(root) as client:
        assert "not empty" in await refused(client, "delete_directory", directory="tree")
        text = await ok(client, "delete_directory", directory="tree", recursive=True)
        assert text == "deleted directory tree and the 10 entries in it"
    assert sorted(os.listdir(root)) == ["kept"]
    assert (tmp_path / "outside" / "secret.txt").read_text() == SECRET
    assert (root / "kept" / "keep.txt").read_text() == "kept"


async def test_recursive_delete_refuses_a_symlink_and_stays_inside(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    os.symlink(tmp_path / "outside", root / "link_out")
    os.symlink("kept", root / "link_in")
    async with serving(root) as client:
        for link in ("link_out", "link_in", "tree/out_dir"):
            text = await refused(client, "delete_directory", directory=link, recursive=True)
            assert "is a symlink, not a directory; use delete_file" in text
        assert "outside the workspace" in await refused(
            client, "delete_directory", directory="link_out/anything", recursive=True
        )
        assert "'..'" in await refused(client, "delete_directory", directory="../outside", recursive=True)
        assert "workspace root" in await refused(client, "delete_directory", directory=".")  # not recursive
    assert (tmp_path / "outside" / "secret.txt").read_text() == SECRET and (root / "kept" / "keep.txt").exists()


async def test_recursive_delete_is_bounded_per_call_and_says_what_is_left(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    async with serving(root, "--max-delete-entries", "4", "--max-workspace-entries", "13") as client:
        assert "and 0 are left" in await refused(client, "create_directory", directory="new")
        first = await ok(client, "delete_directory", directory="tree", recursive=True)
        assert first.startswith("deleted ") and "under tree and stopped (one call deletes at most 4)" in first
        assert "more than 4 are left: call delete_directory again with recursive=true" in first
        texts = [first]
        for _ in range(10):
            texts.append(await ok(client, "delete_directory", directory="tree", recursive=True))
            if texts[-1].startswith("deleted directory tree"):
                break
        assert texts[-1].startswith("deleted directory tree and the ")
        assert any(text.endswith(" are left: call delete_directory again with recursive=true") for text in texts[1:])
        assert await ok(client, "create_directory", directory="new") == "directory new created"  # room again
    assert not (root / "tree").exists() and (tmp_path / "outside" / "secret.txt").read_text() == SECRET


async def test_the_root_can_always_be_emptied_however_deep(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    make_deep(root, 300)  # deeper than the server would make, and than one walk holds open
    async with serving(root, "--max-workspace-entries", "10") as client:
        text = await ok(client, "delete_directory", directory=".", recursive=True)
        assert text == "emptied the workspace root: deleted 314 entries"
        assert await ok(client, "list_directory") == "'.' is an empty directory"
        assert await ok(client, "create_directory", directory="fresh") == "directory fresh created"
    assert os.listdir(root) == ["fresh"] and (tmp_path / "outside" / "secret.txt").read_text() == SECRET


async def test_a_recursive_delete_that_fails_says_what_it_did(tmp_path: Path) -> None:
    root = build_tree(tmp_path)
    with immutable(root / "tree" / "sub" / "deeper" / "g.txt"):
        async with serving(root) as client:
            text = await refused(client, "delete_directory", directory="tree", recursive=True)
            assert "'tree': operation not permitted; " in text and " entries were deleted before it" in text
    async with serving(root) as client:
        await ok(client, "delete_directory", directory="tree", recursive=True)
    assert sorted(os.listdir(root)) == ["kept"]
