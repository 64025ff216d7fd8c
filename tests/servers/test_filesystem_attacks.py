"""Hostile input for the filesystem server, as real tool calls over stdio to `python -m servers.filesystem`.

Every attack must come back as a tool error with the expected reason, return no secret, leave every file inside and
outside the workspace as it was, and leave the server serving. Symlink races run a thread that flips links while
the server is being asked to follow them.
"""

import contextlib
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.servers.conftest import stdio_params

pytestmark = pytest.mark.anyio

SECRET = "TOP-SECRET-7f3a9c"
INSIDE = "inside text"
PASSWD_LINE = "root:x:0:0"


@dataclass(frozen=True)
class Tree:
    base: Path
    root: Path


def build_tree(base: Path) -> Tree:
    """A workspace full of traps, next to secrets in `base` and in a sibling whose name starts with the root's."""
    root = base / "workspace"
    for directory in (root / "sub", root / "race", base / "workspace-evil", base / "outside-dir"):
        directory.mkdir(parents=True)
    for secret in (base / "secret.txt", base / "workspace-evil" / "secret.txt", base / "outside-dir" / "secret.txt"):
        secret.write_text(SECRET)
    os.mkfifo(base / "outside-fifo")
    (root / "inside.txt").write_text(INSIDE)
    (root / "sub" / "nested.txt").write_text("nested")
    links = {
        "link_out_abs": str(base / "secret.txt"),
        "link_out_rel": "../secret.txt",
        "link_dir_out": "../workspace-evil",
        "link_dir_out_abs": str(base / "outside-dir"),
        "chain1": "chain2",
        "chain2": "../secret.txt",
        "chain_dir1": "chain_dir2",
        "chain_dir2": "link_dir_out",
        "sub/deep_link": "../../secret.txt",
        "dangling_out": str(base / "not-there.txt"),
        "dangling_dir_out": str(base / "not-there-dir"),
        "link_root": "/",
        "link_parent": "..",
        "link_dev_zero": "/dev/zero",
        "link_fifo_out": str(base / "outside-fifo"),
        "loop1": "loop2",
        "loop2": "loop1",
    }
    for name, target in links.items():
        os.symlink(target, root / name)
    os.mkfifo(root / "fifo")
    with open(root / "huge.bin", "wb") as huge:
        huge.truncate(2 * 1024 * 1024)
    return Tree(base, root)


def snapshot(top: Path, skip: Path | None = None) -> dict[str, tuple[str, str]]:
    """Every entry under `top` with its kind and content (files hashed, links by target); FIFOs are not opened."""
    seen: dict[str, tuple[str, str]] = {}
    for directory, dirs, files in os.walk(top):
        here = Path(directory)
        if skip is not None:
            dirs[:] = [name for name in dirs if here / name != skip]
        for name in dirs + files:
            path = here / name
            key = str(path.relative_to(top))
            if path.is_symlink():
                seen[key] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[key] = ("dir", "")
            elif path.is_file():
                seen[key] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                seen[key] = ("special", "")
    return seen


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return build_tree(tmp_path_factory.mktemp("attacks"))


@pytest.fixture(scope="module")
async def client(tree: Tree) -> AsyncIterator[Client]:
    """One server for the module: `python -m servers.filesystem --root <tmp>/workspace` over stdio."""
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.filesystem", "--root", str(tree.root))) as client:
            yield client


def text_of(result: Any) -> str:
    return "\n".join(getattr(part, "text", "") for part in result.content)


# (tool, arguments, a word the refusal must contain); `{base}` is the directory that holds the workspace.
ATTACKS: dict[str, tuple[str, dict[str, str], str]] = {
    # climbing out
    "read-dotdot": ("read_file", {"file_path": "../secret.txt"}, "'..'"),
    "read-dotdot-deep": ("read_file", {"file_path": "../../../../../../../../etc/passwd"}, "'..'"),
    "read-dotdot-after-subdir": ("read_file", {"file_path": "sub/../../secret.txt"}, "'..'"),
    "read-dot-then-dotdot": ("read_file", {"file_path": "./../secret.txt"}, "'..'"),
    "read-dotdot-double-slash": ("read_file", {"file_path": "..//secret.txt"}, "'..'"),
    "read-dotdot-trailing": ("read_file", {"file_path": "sub/.."}, "'..'"),
    "read-prefix-sibling": ("read_file", {"file_path": "../workspace-evil/secret.txt"}, "'..'"),
    "read-triple-dot-is-a-name": ("read_file", {"file_path": ".../secret.txt"}, "no such"),
    # absolute and special prefixes
    "read-absolute-outside": ("read_file", {"file_path": "{base}/secret.txt"}, "absolute"),
    "read-absolute-prefix-sibling": ("read_file", {"file_path": "{base}/workspace-evil/secret.txt"}, "absolute"),
    "read-absolute-even-inside": ("read_file", {"file_path": "{base}/workspace/inside.txt"}, "absolute"),
    "read-etc-passwd": ("read_file", {"file_path": "/etc/passwd"}, "absolute"),
    "read-double-slash-root": ("read_file", {"file_path": "//etc/passwd"}, "absolute"),
    "read-proc-environ": ("read_file", {"file_path": "/proc/self/environ"}, "absolute"),
    "read-tilde": ("read_file", {"file_path": "~/secret.txt"}, "'~'"),
    "read-tilde-user": ("read_file", {"file_path": "~root/.bashrc"}, "'~'"),
    "read-env-dollar": ("read_file", {"file_path": "$HOME/secret.txt"}, "environment variable"),
    "read-env-braces": ("read_file", {"file_path": "${PWD}/../secret.txt"}, "environment variable"),
    "read-env-command": ("read_file", {"file_path": "$(cat /etc/passwd)"}, "environment variable"),
    "read-env-percent": ("read_file", {"file_path": "%USERPROFILE%/secret.txt"}, "environment variable"),
    "read-backslash-dotdot": ("read_file", {"file_path": "..\\secret.txt"}, "backslash"),
    "read-backslash-nested": ("read_file", {"file_path": "sub\\..\\..\\secret.txt"}, "backslash"),
    "read-null-byte": ("read_file", {"file_path": "inside.txt\x00../../secret.txt"}, "null byte"),
    "read-control-character": ("read_file", {"file_path": "inside.txt\n../secret.txt"}, "control character"),
    "read-overlong-path": ("read_file", {"file_path": "a/" * 3000}, "characters long"),
    "read-overlong-name": ("read_file", {"file_path": "x" * 300}, "longer than 255"),
    "read-root-itself": ("read_file", {"file_path": "."}, "workspace root"),
    # symlinks
    "read-symlink-absolute": ("read_file", {"file_path": "link_out_abs"}, "outside the workspace"),
    "read-symlink-relative": ("read_file", {"file_path": "link_out_rel"}, "outside the workspace"),
    "read-symlink-from-subdir": ("read_file", {"file_path": "sub/deep_link"}, "outside the workspace"),
    "read-dir-symlink-middle": ("read_file", {"file_path": "link_dir_out/secret.txt"}, "outside the workspace"),
    "read-dir-symlink-absolute": ("read_file", {"file_path": "link_dir_out_abs/secret.txt"}, "outside the workspace"),
    "read-symlink-chain": ("read_file", {"file_path": "chain1"}, "outside the workspace"),
    "read-dir-symlink-chain": ("read_file", {"file_path": "chain_dir1/secret.txt"}, "outside the workspace"),
    "read-symlink-dangling": ("read_file", {"file_path": "dangling_out"}, "outside the workspace"),
    "read-symlink-to-root": ("read_file", {"file_path": "link_root/etc/passwd"}, "outside the workspace"),
    "read-symlink-to-parent": ("read_file", {"file_path": "link_parent/secret.txt"}, "outside the workspace"),
    "read-symlink-loop": ("read_file", {"file_path": "loop1"}, "symlink"),
    # devices, FIFOs, size
    "read-dev-zero-symlink": ("read_file", {"file_path": "link_dev_zero"}, "outside the workspace"),
    "read-fifo-outside-symlink": ("read_file", {"file_path": "link_fifo_out"}, "outside the workspace"),
    "read-fifo-inside": ("read_file", {"file_path": "fifo"}, "FIFO"),
    "read-huge-file": ("read_file", {"file_path": "huge.bin"}, "over the read limit"),
    # listing, searching, inspecting outside
    "list-dotdot": ("list_directory", {"directory": ".."}, "'..'"),
    "list-absolute-root": ("list_directory", {"directory": "/"}, "absolute"),
    "list-prefix-sibling": ("list_directory", {"directory": "../workspace-evil"}, "'..'"),
    "list-dir-symlink": ("list_directory", {"directory": "link_dir_out"}, "outside the workspace"),
    "list-symlink-to-root": ("list_directory", {"directory": "link_root"}, "outside the workspace"),
    "list-symlink-chain": ("list_directory", {"directory": "chain_dir1"}, "outside the workspace"),
    "list-tilde": ("list_directory", {"directory": "~"}, "'~'"),
    "search-dotdot": ("search_files", {"pattern": "secret*", "directory": ".."}, "'..'"),
    "search-dir-symlink": ("search_files", {"pattern": "*", "directory": "link_dir_out"}, "outside the workspace"),
    "search-absolute": ("search_files", {"pattern": "passwd", "directory": "/etc"}, "absolute"),
    "search-null-pattern": ("search_files", {"pattern": "a\x00b"}, "null"),
    "info-dotdot": ("file_info", {"file_path": "../secret.txt"}, "'..'"),
    "info-through-dir-symlink": ("file_info", {"file_path": "link_dir_out/secret.txt"}, "outside the workspace"),
    "info-absolute": ("file_info", {"file_path": "/etc/passwd"}, "absolute"),
    # writing
    "write-dotdot": ("write_file", {"file_path": "../secret.txt", "content": "pwned"}, "'..'"),
    "write-prefix-sibling": ("write_file", {"file_path": "../workspace-evil/secret.txt", "content": "pwned"}, "'..'"),
    "write-absolute": ("write_file", {"file_path": "{base}/secret.txt", "content": "pwned"}, "absolute"),
    "write-through-symlink-absolute": ("write_file", {"file_path": "link_out_abs", "content": "pwned"}, "symlink"),
    "write-through-symlink-relative": ("write_file", {"file_path": "link_out_rel", "content": "pwned"}, "symlink"),
    "write-through-symlink-chain": ("write_file", {"file_path": "chain1", "content": "pwned"}, "symlink"),
    "write-through-dangling-symlink": ("write_file", {"file_path": "dangling_out", "content": "pwned"}, "symlink"),
    "write-to-dev-zero-symlink": ("write_file", {"file_path": "link_dev_zero", "content": "pwned"}, "symlink"),
    "write-into-dir-symlink": (
        "write_file",
        {"file_path": "link_dir_out/secret.txt", "content": "pwned"},
        "outside the workspace",
    ),
    "write-new-file-into-dir-symlink": (
        "write_file",
        {"file_path": "link_dir_out/new.txt", "content": "pwned"},
        "outside the workspace",
    ),
    "write-into-dangling-dir-symlink": (
        "write_file",
        {"file_path": "dangling_dir_out/new.txt", "content": "pwned"},
        "outside the workspace",
    ),
    "write-via-root-symlink": (
        "write_file",
        {"file_path": "link_root/tmp/pwned.txt", "content": "pwned"},
        "outside the workspace",
    ),
    "write-fifo": ("write_file", {"file_path": "fifo", "content": "pwned"}, "FIFO"),
    "write-over-directory": ("write_file", {"file_path": "sub", "content": "pwned"}, "directory"),
    "write-root": ("write_file", {"file_path": ".", "content": "pwned"}, "workspace root"),
    "write-tilde": ("write_file", {"file_path": "~/.bashrc", "content": "pwned"}, "'~'"),
    "write-over-cap": ("write_file", {"file_path": "big.txt", "content": "x" * (1024 * 1024 + 1)}, "write limit"),
    # moving
    "move-into-workspace": ("move_file", {"source": "../secret.txt", "destination": "stolen.txt"}, "'..'"),
    "move-out-of-workspace": ("move_file", {"source": "inside.txt", "destination": "../moved.txt"}, "'..'"),
    "move-out-absolute": ("move_file", {"source": "inside.txt", "destination": "{base}/moved.txt"}, "absolute"),
    "move-out-via-dir-symlink": (
        "move_file",
        {"source": "inside.txt", "destination": "link_dir_out/moved.txt"},
        "outside the workspace",
    ),
    "move-in-via-dir-symlink": (
        "move_file",
        {"source": "link_dir_out/secret.txt", "destination": "stolen.txt"},
        "outside the workspace",
    ),
    "move-onto-symlink": ("move_file", {"source": "inside.txt", "destination": "link_out_abs"}, "already exists"),
    "move-root": ("move_file", {"source": ".", "destination": "moved-root"}, "workspace root"),
    "move-dir-into-itself": ("move_file", {"source": "sub", "destination": "sub/inner"}, "into itself"),
    # deleting and creating
    "delete-dotdot": ("delete_file", {"file_path": "../secret.txt"}, "'..'"),
    "delete-absolute": ("delete_file", {"file_path": "{base}/secret.txt"}, "absolute"),
    "delete-via-dir-symlink": ("delete_file", {"file_path": "link_dir_out/secret.txt"}, "outside the workspace"),
    "delete-via-symlink-chain": ("delete_file", {"file_path": "chain_dir1/secret.txt"}, "outside the workspace"),
    "delete-root": ("delete_file", {"file_path": "."}, "workspace root"),
    "delete-root-empty-path": ("delete_file", {"file_path": ""}, "workspace root"),
    "delete-directory-with-delete-file": ("delete_file", {"file_path": "sub"}, "is a directory"),
    "rmdir-root": ("delete_directory", {"directory": "."}, "workspace root"),
    "rmdir-root-slash": ("delete_directory", {"directory": "./"}, "workspace root"),
    "rmdir-dir-symlink": ("delete_directory", {"directory": "link_dir_out"}, "symlink, not a directory"),
    "rmdir-parent-symlink": ("delete_directory", {"directory": "link_parent"}, "symlink, not a directory"),
    "rmdir-prefix-sibling": ("delete_directory", {"directory": "../workspace-evil"}, "'..'"),
    "rmdir-not-empty": ("delete_directory", {"directory": "sub"}, "not empty"),
    "mkdir-dotdot": ("create_directory", {"directory": "../evil"}, "'..'"),
    "mkdir-via-dir-symlink": ("create_directory", {"directory": "link_dir_out/evil"}, "outside the workspace"),
    "mkdir-via-dangling-symlink": ("create_directory", {"directory": "dangling_dir_out/evil"}, "outside the workspace"),
    "mkdir-over-dangling-symlink": ("create_directory", {"directory": "dangling_dir_out"}, "already exists"),
}


@pytest.mark.parametrize("name", ATTACKS)
async def test_attack_is_refused_and_changes_nothing(name: str, client: Client, tree: Tree) -> None:
    tool, template, reason = ATTACKS[name]
    arguments = {key: value.replace("{base}", str(tree.base)) for key, value in template.items()}
    before = snapshot(tree.base)
    with anyio.fail_after(10):  # a FIFO or a device must never make the server block
        result = await client.call_tool(tool, arguments)
    text = text_of(result)
    assert result.is_error, f"{name} was not refused: {text[:300]}"
    assert reason in text, text
    assert SECRET not in text and PASSWD_LINE not in text
    assert snapshot(tree.base) == before
    with anyio.fail_after(10):  # and the server is still serving
        still = await client.call_tool("read_file", {"file_path": "inside.txt"})
    assert not still.is_error and text_of(still) == INSIDE


def test_there_are_at_least_forty_attacks() -> None:
    assert len(ATTACKS) >= 40


async def test_search_from_the_root_never_descends_into_symlinks(client: Client, tree: Tree) -> None:
    with anyio.fail_after(10):
        result = await client.call_tool("search_files", {"pattern": "secret"})
    assert not result.is_error
    assert text_of(result).startswith("no names")  # only workspace names count; linked directories are not entered


async def test_listing_shows_links_without_following_them(client: Client) -> None:
    with anyio.fail_after(10):
        result = await client.call_tool("list_directory", {"directory": "."})
    listing = text_of(result).splitlines()
    assert "link_dir_out [symlink]" in listing and "fifo [FIFO]" in listing
    assert SECRET not in text_of(result)


@contextlib.contextmanager
def flipping(flip: Callable[[], None]) -> Iterator[list[int]]:
    """Run `flip` over and over in a thread while the body runs; yields a one-item list counting the flips."""
    stop = threading.Event()
    flips = [0]
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                flip()
                flips[0] += 1
        except BaseException as error:  # re-raised by the test below
            errors.append(error)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield flips
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors, errors


def swap_link(path: Path, target: str) -> None:
    """Point `path` at `target` atomically (a new link renamed over the old one)."""
    temporary = path.with_name(path.name + ".new")
    os.symlink(target, temporary)
    os.replace(temporary, path)


async def read_many(client: Client, path: str, times: int = 150) -> list[str]:
    texts = []
    for _ in range(times):
        with anyio.fail_after(10):
            result = await client.call_tool("read_file", {"file_path": path})
        text = text_of(result)
        assert not result.is_error or text.startswith("Error executing tool read_file: "), text  # always a reason
        texts.append(("error: " if result.is_error else "") + text)
    return texts


async def test_file_symlink_flipped_between_inside_and_outside(client: Client, tree: Tree) -> None:
    race = tree.root / "race"
    (race / "ok.txt").write_text(INSIDE)
    link = race / "flip"
    os.symlink("ok.txt", link)
    outside = snapshot(tree.base, skip=tree.root)

    def flip() -> None:
        swap_link(link, "ok.txt" if link.readlink() != Path("ok.txt") else str(tree.base / "secret.txt"))

    with flipping(flip) as flips:
        texts = await read_many(client, "race/flip")
    assert flips[0] > 0
    assert not any(SECRET in text for text in texts)
    assert all(text == INSIDE or text.startswith("error: ") for text in texts)
    assert snapshot(tree.base, skip=tree.root) == outside


async def test_directory_symlink_flipped_in_the_middle_of_the_path(client: Client, tree: Tree) -> None:
    race = tree.root / "race" / "middle"
    (race / "real").mkdir(parents=True)
    (race / "real" / "secret.txt").write_text(INSIDE)
    link = race / "d"
    os.symlink("real", link)
    outside_target = str(tree.base / "outside-dir")

    def flip() -> None:
        swap_link(link, "real" if link.readlink() != Path("real") else outside_target)

    with flipping(flip) as flips:
        texts = await read_many(client, "race/middle/d/secret.txt")
    assert flips[0] > 0
    assert not any(SECRET in text for text in texts)
    assert all(text == INSIDE or text.startswith("error: ") for text in texts)


async def test_real_directory_swapped_for_a_symlink_between_check_and_use(client: Client, tree: Tree) -> None:
    race = tree.root / "race" / "swap"
    real, parked = race / "d", race / "parked"
    real.mkdir(parents=True)
    (real / "secret.txt").write_text(INSIDE)
    outside_target = str(tree.base / "outside-dir")

    def flip() -> None:  # a real directory one moment, a symlink to the outside the next
        os.rename(real, parked)
        os.symlink(outside_target, real)
        os.unlink(real)
        os.rename(parked, real)

    with flipping(flip) as flips:
        texts = await read_many(client, "race/swap/d/secret.txt")
    assert flips[0] > 0
    assert not any(SECRET in text for text in texts)
    assert all(text == INSIDE or text.startswith("error: ") for text in texts)


async def test_write_while_a_symlink_to_the_outside_comes_and_goes(client: Client, tree: Tree) -> None:
    race = tree.root / "race" / "write"
    race.mkdir(parents=True)
    target = race / "target.txt"
    outside = snapshot(tree.base, skip=tree.root)

    def flip() -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        with contextlib.suppress(FileExistsError):
            os.symlink(tree.base / "secret.txt", target)

    with flipping(flip) as flips:
        for _ in range(100):
            with anyio.fail_after(10):
                await client.call_tool("write_file", {"file_path": "race/write/target.txt", "content": "pwned"})
    assert flips[0] > 0
    assert snapshot(tree.base, skip=tree.root) == outside
    assert (tree.base / "secret.txt").read_text() == SECRET
