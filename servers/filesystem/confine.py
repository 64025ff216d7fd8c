"""Confinement: how a path given inside the workspace is checked as text, resolved, and opened one component at a time
from the root's directory fd with O_NOFOLLOW, so nothing outside is ever reached even if symlinks are swapped in
between check and use; PathRefused and the reasons for refusals. Imports only `display`; never `workspace`, `quota`,
`removal`, MCP or `host`.
"""

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from typing import Self

from .display import describe_mode, displayed, shown

MIB = 1024 * 1024
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# `$HOME`, `${HOME}`, `$(cmd)` and `%HOME%` are refused, never expanded; a `$` before a digit or space is literal.
ENV_VARIABLE = re.compile(r"\$[A-Za-z_{(]|%[A-Za-z_][A-Za-z0-9_]*%")


class PathRefused(Exception):
    """A request the workspace refuses. The message is the reason and names paths only as the caller gave them."""


def split_path(path: str) -> list[str]:
    """Check a path given relative to the workspace and return its components ([] for the root itself).

    Refused, never reinterpreted: absolute paths, `..`, `~`, environment variables, backslashes, null bytes,
    control characters, text that is not valid Unicode, and overlong paths or names.
    """
    if not isinstance(path, str):
        raise PathRefused("a path must be a string")
    if "\0" in path:
        raise PathRefused("the path contains a null byte; refused")
    if len(path) > MAX_PATH_CHARS:
        raise PathRefused(f"the path is {len(path)} characters long; at most {MAX_PATH_CHARS} are allowed")
    if "\\" in path:
        raise PathRefused(f"{shown(path)} contains a backslash; separate directories with '/'")
    if path.startswith("/"):
        raise PathRefused(
            f"{shown(path)} is an absolute path; paths are relative to the workspace root, e.g. 'notes/todo.md'"
        )
    if path.startswith("~"):
        raise PathRefused(f"{shown(path)} starts with '~', which is not expanded; give a path inside the workspace")
    if ENV_VARIABLE.search(path):
        raise PathRefused(f"{shown(path)} contains an environment variable; variables are never expanded")
    if any(ord(char) < 32 or ord(char) == 127 for char in path):
        raise PathRefused(f"{shown(path)} contains a control character; refused")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise PathRefused("the path is not valid Unicode (lone surrogate); refused") from None
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise PathRefused(f"{shown(path)} contains '..'; paths cannot climb out of a directory")
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            raise PathRefused(f"{shown(path)} has a name longer than {MAX_NAME_BYTES} bytes")
        parts.append(part)
    return parts


def refusal(error: OSError, path: str) -> PathRefused:
    """The reason for a failed system call, naming the path as the caller gave it."""
    reasons = {
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "a part of the path is not a directory",
        errno.ELOOP: "a symlink in the path changed while it was being opened, or loops; refused",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EEXIST: "it already exists",
        errno.EISDIR: "it is a directory",
        errno.ENOTEMPTY: "the directory is not empty",
        errno.EINVAL: "invalid operation (for example, moving a directory into itself)",
        errno.ENAMETOOLONG: "the path is too long",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the workspace is read-only",
        errno.EBUSY: "it is in use",
    }
    reason = reasons.get(error.errno or 0, os.strerror(error.errno or 0) or "failed")
    return PathRefused(f"{shown(path)}: {reason}")


@contextlib.contextmanager
def reasons(path: str) -> Iterator[None]:
    """Turn system errors into refusals with a clear reason."""
    try:
        yield
    except OSError as error:
        raise refusal(error, path) from None


def lstat(name: str, dir_fd: int) -> os.stat_result | None:
    """The entry itself (never its symlink target), or None when there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def join(parts: list[str]) -> str:
    """A path to show in a result or message (see `displayed`)."""
    return displayed("/".join(parts) or ".")


class Confined:
    """A directory that every path is resolved and opened inside, from an fd of it held since the start."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)  # a root reached through a symlink is resolved once, here
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self._root_fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _inside(self, real: str) -> list[str] | None:
        """Components of an absolute, resolved path relative to the root; None when it is outside."""
        if real == self.root:
            return []
        prefix = self.root.rstrip("/") + "/"
        if not real.startswith(prefix):  # the '/' makes /ws-evil differ from /ws
            return None
        return real[len(prefix) :].split("/")

    def _resolve(self, parts: list[str], path: str) -> list[str]:
        """Follow symlinks as the system would, and insist that where they lead is still inside the workspace.

        The answer is only a plan: it is opened with O_NOFOLLOW component by component, so a symlink swapped in
        after this check makes the open fail instead of leading outside.
        """
        try:
            real = os.path.realpath(os.path.join(self.root, *parts))
        except OSError:  # a symlink vanished between the system's lstat and readlink
            raise PathRefused(f"{shown(path)} changed while it was being resolved; try again") from None
        inside = self._inside(real)
        if inside is None:
            raise PathRefused(f"{shown(path)} leads outside the workspace through a symlink; refused")
        return inside

    @contextlib.contextmanager
    def _directory(self, parts: list[str], path: str, create: bool = False) -> Iterator[int]:
        """An fd of the directory at `parts`, opened from the root without following any symlink."""
        fd = os.open(".", DIR_FLAGS, dir_fd=self._root_fd)
        try:
            for index, part in enumerate(parts):
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise PathRefused(f"{shown(path)}: no such directory {join(parts[: index + 1])!r}") from None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except OSError as error:
                    raise self._not_a_directory(error, fd, part, path) from None
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def _not_a_directory(self, error: OSError, fd: int, part: str, path: str) -> PathRefused:
        if error.errno in (errno.ENOTDIR, errno.ELOOP):
            entry = lstat(part, fd)
            if entry is not None and stat.S_ISLNK(entry.st_mode):
                return PathRefused(f"{shown(path)}: a symlink in the path changed while it was being opened; refused")
            if entry is None or stat.S_ISDIR(entry.st_mode):
                return PathRefused(f"{shown(path)}: {part!r} changed while it was being opened; try again")
            return PathRefused(f"{shown(path)}: {part!r} is a {describe_mode(entry.st_mode)}, not a directory")
        return refusal(error, path)

    def _missing(self, parts: list[str]) -> int:
        """How many directories along `parts` do not exist yet: what creating them costs. 0 when something else
        is in the way (a file, a symlink): creating them for real then refuses with the reason."""
        fd = os.open(".", DIR_FLAGS, dir_fd=self._root_fd)
        try:
            for index, part in enumerate(parts):
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    return len(parts) - index
                except OSError:
                    return 0
                os.close(fd)
                fd = child
            return 0
        finally:
            os.close(fd)

    def _target(self, path: str, what: str) -> tuple[list[str], str]:
        """The resolved parent directory and the literal last name of a path that must not be the root."""
        parts = split_path(path)
        if not parts:
            raise PathRefused(f"{shown(path)} is the workspace root itself; {what}")
        return self._resolve(parts[:-1], path), parts[-1]
