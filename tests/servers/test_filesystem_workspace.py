"""The filesystem server's confinement and file operations (`servers.filesystem.confine` and `.workspace`), without
MCP."""

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers.filesystem.confine import PathRefused, split_path
from servers.filesystem.display import looks_binary
from servers.filesystem.workspace import TEMP_SUFFIX, Limits, Workspace

SECRET = "TOP-SECRET"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "ws-evil").mkdir()
    (tmp_path / "ws-evil" / "secret.txt").write_text(SECRET)
    return tmp_path


@pytest.fixture
def ws(outside: Path) -> Iterator[Workspace]:
    root = outside / "ws"
    root.mkdir()
    (root / "a.txt").write_text("alpha")
    (root / "dir" / "deeper").mkdir(parents=True)
    (root / "dir" / "deeper" / "b.md").write_text("beta")
    with Workspace(root) as workspace:
        yield workspace


def refused(call: object, *args: str, reason: str = "") -> str:
    with pytest.raises(PathRefused) as caught:
        call(*args)  # type: ignore[operator]
    assert reason in str(caught.value)
    return str(caught.value)


# Paths as text


@pytest.mark.parametrize(
    ("path", "parts"),
    [
        (".", []),
        ("", []),
        ("./", []),
        ("a", ["a"]),
        ("a//b/./c/", ["a", "b", "c"]),
        ("notes/ünïcødé 文件.txt", ["notes", "ünïcødé 文件.txt"]),
        ("price$5 and 50%.txt", ["price$5 and 50%.txt"]),
        ("a~b/~c", ["a~b", "~c"]),
        (".../..a/b..", ["...", "..a", "b.."]),
        ("C:/x", ["C:", "x"]),
    ],
)
def test_plain_paths_split_into_components(path: str, parts: list[str]) -> None:
    assert split_path(path) == parts


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("..", "'..'"),
        ("a/../b", "'..'"),
        ("/etc/passwd", "absolute"),
        ("//x", "absolute"),
        ("~", "'~'"),
        ("~/x", "'~'"),
        ("$HOME", "environment variable"),
        ("a/${HOME}", "environment variable"),
        ("$(id)", "environment variable"),
        ("%APPDATA%/x", "environment variable"),
        ("..\\x", "backslash"),
        ("a\x00b", "null byte"),
        ("a\nb", "control character"),
        ("a\x7fb", "control character"),
        ("\udcff", "not valid Unicode"),
        ("a/" * 2049, "characters long"),
        ("é" * 128, "longer than 255 bytes"),
    ],
)
def test_dangerous_paths_are_refused_with_a_reason(path: str, reason: str) -> None:
    refused(split_path, path, reason=reason)


def test_a_name_of_exactly_255_bytes_is_fine() -> None:
    assert split_path("x" * 255) == ["x" * 255]


def test_binary_detection() -> None:
    assert not looks_binary(b"plain text\n")
    assert not looks_binary("é".encode() * 5000)  # multi-byte characters across the 8 KiB mark
    assert looks_binary(b"text\x00more")
    assert looks_binary(b"\xff\xfe broken")
    assert looks_binary(b"a" * 10_000 + b"\xff")  # invalid UTF-8 after the sniffed part is still not text


# Reading


def test_read_nested_and_unicode(ws: Workspace) -> None:
    assert ws.read_file("dir/deeper/b.md") == "beta"
    assert ws.read_file("./dir//deeper/b.md") == "beta"
    name = Path(ws.root) / "dir" / "naïve 文件.txt"
    name.write_text("ünïcødé")
    assert ws.read_file("dir/naïve 文件.txt") == "ünïcødé"


def test_symlinks_that_stay_inside_are_followed(ws: Workspace) -> None:
    root = Path(ws.root)
    os.symlink("a.txt", root / "to_a")
    os.symlink("dir/deeper", root / "to_deeper")
    os.symlink(str(root / "a.txt"), root / "dir" / "absolute_inside")
    os.symlink("../a.txt", root / "dir" / "up_inside")
    os.symlink("to_a", root / "chain_inside")
    assert ws.read_file("to_a") == "alpha"
    assert ws.read_file("to_deeper/b.md") == "beta"
    assert ws.read_file("dir/absolute_inside") == "alpha"
    assert ws.read_file("dir/up_inside") == "alpha"
    assert ws.read_file("chain_inside") == "alpha"
    assert "b.md" in ws.list_directory("to_deeper")


def test_symlinks_that_leave_are_refused(ws: Workspace, outside: Path) -> None:
    root = Path(ws.root)
    os.symlink(outside / "secret.txt", root / "out")
    os.symlink("../ws-evil", root / "evil")
    os.symlink(outside / "nothing", root / "dangling")
    for path in ("out", "evil/secret.txt", "dangling"):
        message = refused(ws.read_file, path, reason="outside the workspace")
        assert SECRET not in message and str(outside) not in message


def test_a_root_reached_through_a_symlink_works(outside: Path) -> None:
    real = outside / "real-ws"
    real.mkdir()
    (real / "f.txt").write_text("through a link")
    os.symlink(real, outside / "linked-ws")
    os.symlink(outside / "linked-ws" / "f.txt", real / "absolute_via_link")
    with Workspace(outside / "linked-ws") as workspace:
        assert workspace.root == str(real)
        assert workspace.read_file("f.txt") == "through a link"
        assert workspace.read_file("absolute_via_link") == "through a link"
        assert workspace.write_file("g.txt", "new") == "wrote 3 bytes to g.txt"
    assert (real / "g.txt").read_text() == "new"


def test_binary_files_are_described_not_shown(ws: Workspace) -> None:
    (Path(ws.root) / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (Path(ws.root) / "blob").write_bytes(b"\xff\xfe\xfd")
    assert ws.read_file("image.png") == (
        "[binary file 'image.png', 10 bytes, type guessed from extension: image/png; not shown]"
    )
    assert "3 bytes, type guessed from extension: unknown" in ws.read_file("blob")


def test_read_cap_is_exact(outside: Path) -> None:
    root = outside / "capped"
    root.mkdir()
    (root / "fits.txt").write_text("x" * 10)
    (root / "over.txt").write_text("x" * 11)
    with Workspace(root, Limits(max_read_bytes=10)) as workspace:
        assert workspace.read_file("fits.txt") == "x" * 10
        refused(workspace.read_file, "over.txt", reason="11 bytes, over the read limit of 10 bytes")


def test_fifos_and_directories_are_not_read(ws: Workspace) -> None:
    os.mkfifo(Path(ws.root) / "pipe")  # opening it for reading would block; it is never opened
    refused(ws.read_file, "pipe", reason="FIFO, not a regular file")
    refused(ws.read_file, "dir", reason="is a directory")
    refused(ws.read_file, "missing.txt", reason="no such file")
    refused(ws.read_file, "a.txt/x", reason="'a.txt' is a file, not a directory")


def test_a_directory_swapped_for_a_symlink_after_the_check_is_refused(ws: Workspace, outside: Path) -> None:
    """The check (realpath) passes; the walk with O_NOFOLLOW then meets the symlink and refuses."""
    root = Path(ws.root)
    (root / "dir" / "secret.txt").write_text("inside")
    resolve = ws._resolve

    def resolve_then_swap(parts: list[str], path: str) -> list[str]:
        planned = resolve(parts, path)
        os.rename(root / "dir", root / "parked")
        os.symlink(outside / "ws-evil", root / "dir")
        return planned

    ws._resolve = resolve_then_swap  # type: ignore[method-assign]
    message = refused(ws.read_file, "dir/secret.txt", reason="symlink in the path changed")
    assert SECRET not in message


def test_a_file_swapped_after_the_check_is_refused(
    ws: Workspace, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(ws.root)
    real_stat = os.stat

    def stat_then_swap(path: str, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> os.stat_result:
        result = real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        if path == "a.txt":
            os.unlink(root / "a.txt")
            os.symlink(outside / "secret.txt", root / "a.txt")
        return result

    monkeypatch.setattr(os, "stat", stat_then_swap)
    message = refused(ws.read_file, "a.txt")
    monkeypatch.undo()
    assert SECRET not in message and "symlink" in message


# Listing and searching


def test_listing_puts_directories_first_and_is_capped(outside: Path) -> None:
    root = outside / "many"
    root.mkdir()
    for index in range(7):
        (root / f"f{index}.txt").write_text("x" * index)
    (root / "sub").mkdir()
    with Workspace(root) as workspace:
        lines = workspace.list_directory(".").splitlines()
        assert lines[0] == "sub/" and "f3.txt (3 bytes)" in lines and len(lines) == 8
    with Workspace(root, Limits(max_list_entries=3)) as workspace:
        lines = workspace.list_directory("").splitlines()
        assert len(lines) == 4 and lines[-1] == "[truncated: showing 3 entries; the directory has more]"


def test_listing_an_empty_directory_and_special_entries(ws: Workspace) -> None:
    (Path(ws.root) / "empty").mkdir()
    assert ws.list_directory("empty") == "'empty' is an empty directory"
    os.mkfifo(Path(ws.root) / "pipe")
    os.symlink("a.txt", Path(ws.root) / "link")
    lines = ws.list_directory().splitlines()
    assert "pipe [FIFO]" in lines and "link [symlink]" in lines and "a.txt (5 bytes)" in lines


def test_search_by_glob_substring_and_path(ws: Workspace) -> None:
    assert ws.search_files("*.md") == "dir/deeper/b.md"
    assert ws.search_files("A") == "a.txt"  # substring, case-insensitive
    assert ws.search_files("dir/*/b.md") == "dir/deeper/b.md"
    assert ws.search_files("deep", "dir") == "dir/deeper/"
    assert ws.search_files("zzz").startswith("no names under '.' match 'zzz'")
    refused(ws.search_files, "", reason="pattern")


def test_search_does_not_enter_symlinked_directories(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "ws-evil", Path(ws.root) / "evil")
    os.symlink("dir", Path(ws.root) / "dir_again")
    assert ws.search_files("secret") == "no names under '.' match 'secret'"
    assert ws.search_files("*.md") == "dir/deeper/b.md"


def test_search_caps(outside: Path) -> None:
    root = outside / "wide"
    (root / "a" / "b" / "c" / "d").mkdir(parents=True)
    for index in range(30):
        (root / f"hit{index:02}.txt").write_text("")
    with Workspace(root, Limits(max_search_results=5)) as workspace:
        lines = workspace.search_files("hit").splitlines()
        assert lines[:5] == [f"hit{index:02}.txt" for index in range(5)] and "truncated" in lines[-1]
    with Workspace(root, Limits(max_search_entries=10)) as workspace:
        assert "[stopped after examining 10 entries]" in workspace.search_files("*")
    with Workspace(root, Limits(max_search_depth=2)) as workspace:
        found = workspace.search_files("*")
        assert "a/b/" in found and "a/b/c/" not in found and "not searched" in found


# Inspecting


def test_file_info(ws: Workspace, outside: Path) -> None:
    info = ws.file_info("a.txt").splitlines()
    assert info[:3] == ["path: a.txt", "type: file", "size: 5 bytes"]
    assert info[3].startswith("modified: ") and info[3].endswith("+00:00")
    assert "guessed type: text/plain" in info
    assert "type: directory" in ws.file_info("dir")
    assert "path: ." in ws.file_info(".")
    os.symlink("dir/deeper/b.md", Path(ws.root) / "inside_link")
    os.symlink(outside / "secret.txt", Path(ws.root) / "outside_link")
    os.symlink("nowhere", Path(ws.root) / "dangling")
    assert "target: dir/deeper/b.md (file)" in ws.file_info("inside_link")
    assert "target: outside the workspace (never followed)" in ws.file_info("outside_link")
    assert "target: nowhere (missing)" in ws.file_info("dangling")
    refused(ws.file_info, "missing", reason="no such file")


def make_names_that_are_not_utf8(root: str) -> None:
    """bad\\xffname.txt, a directory dir\\xfe holding one.txt, and symlinks to both (the system's names are bytes)."""
    base = os.fsencode(root)
    os.close(os.open(base + b"/bad\xffname.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkdir(base + b"/dir\xfe")
    os.close(os.open(base + b"/dir\xfe/one.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    os.symlink(b"bad\xffname.txt", base + b"/to-bad")
    os.symlink(b"dir\xfe", base + b"/to-dir")


def test_names_that_are_not_utf8_are_shown_safely(ws: Workspace) -> None:
    make_names_that_are_not_utf8(ws.root)
    marker = " [name is not valid UTF-8]"
    shown = {
        "list": ws.list_directory("."),
        "search": ws.search_files("name"),
        "glob": ws.search_files("*.txt"),
        "info": ws.file_info("to-bad"),
        "write": ws.write_file("to-dir/two.txt", "x"),
        "move": ws.move_file("to-dir/two.txt", "to-dir/three.txt"),
        "delete": ws.delete_file("to-dir/three.txt"),
        "list inside": ws.list_directory("to-dir"),
    }
    for what, text in shown.items():
        text.encode("utf-8")  # what the server's stdout writer does; a lone surrogate would raise here
        assert marker in text or what == "list inside", what
    assert f"bad\ufffdname.txt{marker} (0 bytes)" in shown["list"] and f"dir\ufffd/{marker}" in shown["list"]
    assert f"bad\ufffdname.txt{marker}" in shown["search"].splitlines()
    assert f"dir\ufffd/one.txt{marker}" in shown["glob"].splitlines()
    assert f"target: bad\ufffdname.txt{marker} (file)" in shown["info"]
    assert shown["write"] == f"wrote 1 bytes to dir\ufffd/two.txt{marker}"
    assert shown["list inside"] == "one.txt (0 bytes)"


# Writing


def test_write_drops_setuid_setgid_and_sticky_bits(ws: Workspace) -> None:
    target = Path(ws.root) / "a.txt"
    os.chmod(target, 0o7755)
    if not target.stat().st_mode & 0o7000:
        pytest.skip("this system refused to set any special bit")
    ws.write_file("a.txt", "#!/bin/sh\nid\n")
    assert target.stat().st_mode & 0o7777 == 0o755


def test_write_creates_parents_and_replaces(ws: Workspace) -> None:
    assert ws.write_file("new/deep/ünï.txt", "héllo") == "wrote 6 bytes to new/deep/ünï.txt"
    assert ws.read_file("new/deep/ünï.txt") == "héllo"
    os.chmod(Path(ws.root) / "a.txt", 0o600)
    ws.write_file("a.txt", "replaced")
    assert ws.read_file("a.txt") == "replaced"
    assert (Path(ws.root) / "a.txt").stat().st_mode & 0o777 == 0o600  # the mode of a replaced file is kept
    assert not [name for name in os.listdir(ws.root) if name.endswith(TEMP_SUFFIX)]


def test_write_cap_and_bad_content(outside: Path) -> None:
    root = outside / "small"
    root.mkdir()
    with Workspace(root, Limits(max_write_bytes=4)) as workspace:
        workspace.write_file("ok.txt", "four")
        refused(workspace.write_file, "big.txt", "fiver", reason="5 bytes, over the write limit of 4 bytes")
        refused(workspace.write_file, "bad.txt", "\udcff", reason="not valid Unicode")
    assert sorted(os.listdir(root)) == ["ok.txt"]


def test_write_never_goes_through_a_symlink(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret.txt", Path(ws.root) / "out")
    os.symlink("a.txt", Path(ws.root) / "in")
    refused(ws.write_file, "out", "pwned", reason="is a symlink")
    refused(ws.write_file, "in", "changed", reason="is a symlink")
    assert (outside / "secret.txt").read_text() == SECRET
    assert ws.read_file("a.txt") == "alpha"


def test_a_symlink_swapped_in_before_the_rename_is_replaced_not_followed(ws: Workspace, outside: Path) -> None:
    root = Path(ws.root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.symlink(outside / "secret.txt", root / "target")
        Workspace._replace(fd, "target", b"mine", 0o644)
    finally:
        os.close(fd)
    assert not (root / "target").is_symlink() and (root / "target").read_text() == "mine"
    assert (outside / "secret.txt").read_text() == SECRET


def test_a_failed_write_leaves_the_old_file_and_no_temporary(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    refused(ws.write_file, "a.txt", "half-written", reason="no space left")
    monkeypatch.undo()
    assert ws.read_file("a.txt") == "alpha"
    assert sorted(os.listdir(ws.root)) == ["a.txt", "dir"]


def test_readers_never_see_a_partial_write(ws: Workspace) -> None:
    versions = ("A" * 300_000, "B" * 300_000)
    ws.write_file("big.txt", versions[0])
    stop = threading.Event()

    def writer() -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            ws.write_file("big.txt", versions[turn % 2])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen = {ws.read_file("big.txt") for _ in range(100)}
    finally:
        stop.set()
        thread.join(timeout=10)
    assert seen <= set(versions)
    assert not [name for name in os.listdir(ws.root) if name.endswith(TEMP_SUFFIX)]


def test_write_refuses_fifos_directories_and_the_root(ws: Workspace) -> None:
    os.mkfifo(Path(ws.root) / "pipe")
    refused(ws.write_file, "pipe", "x", reason="FIFO")
    refused(ws.write_file, "dir", "x", reason="is a directory")
    refused(ws.write_file, ".", "x", reason="workspace root")
    refused(ws.write_file, "a.txt/inner", "x", reason="not a directory")


# Moving, deleting, creating


def test_move(ws: Workspace) -> None:
    assert ws.move_file("a.txt", "dir/moved.txt") == "moved a.txt to dir/moved.txt"
    assert ws.read_file("dir/moved.txt") == "alpha"
    assert ws.move_file("dir/deeper", "deeper") == "moved dir/deeper to deeper"
    refused(ws.move_file, "deeper/b.md", "dir/moved.txt", reason="already exists")
    refused(ws.move_file, "missing", "x", reason="no such file")
    refused(ws.move_file, "deeper", "nowhere/deeper", reason="no such directory")
    assert ws.read_file("deeper/b.md") == "beta"


def test_moving_a_symlink_moves_the_link(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret.txt", Path(ws.root) / "out")
    ws.move_file("out", "dir/out")
    assert os.readlink(Path(ws.root) / "dir" / "out") == str(outside / "secret.txt")
    assert (outside / "secret.txt").read_text() == SECRET
    refused(ws.read_file, "dir/out", reason="outside the workspace")


def test_delete_file_and_links(ws: Workspace, outside: Path) -> None:
    os.symlink(outside / "secret.txt", Path(ws.root) / "out")
    os.symlink("dir", Path(ws.root) / "dir_link")
    assert ws.delete_file("out") == "deleted out"
    assert ws.delete_file("dir_link") == "deleted dir_link"  # the link, not the directory behind it
    assert (outside / "secret.txt").read_text() == SECRET and (Path(ws.root) / "dir").is_dir()
    assert ws.delete_file("a.txt") == "deleted a.txt"
    refused(ws.delete_file, "a.txt", reason="no such file")
    refused(ws.delete_file, "dir", reason="is a directory")


def test_delete_directory_only_when_empty(ws: Workspace) -> None:
    refused(ws.delete_directory, "dir", reason="not empty")
    refused(ws.delete_directory, "a.txt", reason="is a file, not a directory")
    ws.delete_file("dir/deeper/b.md")
    assert ws.delete_directory("dir/deeper") == "deleted directory dir/deeper"
    refused(ws.delete_directory, ".", reason="workspace root")
    assert Path(ws.root).is_dir()


def test_create_directory(ws: Workspace) -> None:
    assert ws.create_directory("x/y/z") == "directory x/y/z created"
    assert ws.create_directory("x/y/z/") == "directory x/y/z already existed"
    assert ws.create_directory(".") == "the workspace root already exists"
    refused(ws.create_directory, "a.txt", reason="already exists as a file")
    assert (Path(ws.root) / "x" / "y" / "z").is_dir()
