"""Workspace confinement and the file operations behind every filesystem tool. Each path is checked as text, then
opened one component at a time from the workspace's directory fd with O_NOFOLLOW, so nothing outside the workspace
is ever read or changed, even if symlinks are swapped in between check and use. The quota (bytes,
entries, depth) is kept by `quota`, recursive deletes by `removal`. Plain `os`; never imports MCP or `host`.
"""

import contextlib
import errno
import fnmatch
import itertools
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import removal
from .quota import MAX_LEVELS, Quota, QuotaExceeded, count, deeper_than

MIB = 1024 * 1024
GIB = 1024 * MIB
SNIFF_BYTES = 8192
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
SHOWN_CHARS = 120
TEMP_SUFFIX = ".mcpbot-tmp"
NOT_UTF8 = " [name is not valid UTF-8]"

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# `$HOME`, `${HOME}`, `$(cmd)` and `%HOME%` are refused, never expanded; a `$` before a digit or space is literal.
ENV_VARIABLE = re.compile(r"\$[A-Za-z_{(]|%[A-Za-z_][A-Za-z0-9_]*%")


class PathRefused(Exception):
    """A request the workspace refuses. The message is the reason and names paths only as the caller gave them."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one call may read, write, list, search or delete, and on what the whole workspace may hold."""

    max_read_bytes: int = MIB
    max_write_bytes: int = MIB
    max_list_entries: int = 1000
    max_search_results: int = 200
    max_search_entries: int = 20_000
    max_search_depth: int = 32
    max_workspace_bytes: int = GIB
    max_workspace_entries: int = 100_000
    max_depth: int = 64
    max_delete_entries: int = 10_000

    def __post_init__(self) -> None:
        if not 1 <= self.max_depth <= MAX_LEVELS:
            raise ValueError(f"max_depth must be 1 to {MAX_LEVELS}, not {self.max_depth}")


def shown(path: str) -> str:
    """A user path quoted for a message, shortened if it is long."""
    text = path if len(path) <= SHOWN_CHARS else path[:SHOWN_CHARS] + "..."
    return repr(text)


def displayed(text: str) -> str:
    """A name or path from the disk as it can be sent: a name that is not valid UTF-8 (its bytes arrive as lone
    surrogates, which no UTF-8 writer accepts) shows U+FFFD for each bad byte and ends with a marker."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")  # back to the bytes on disk
    except UnicodeEncodeError:  # a surrogate that is no escaped byte: never from the system, but never crash
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace") + NOT_UTF8


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


def describe_mode(mode: int) -> str:
    """The kind of file a mode says it is, in words."""
    kinds = [
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


def looks_binary(data: bytes) -> bool:
    """True when the bytes are not UTF-8 text: a NUL in the first 8 KiB, or anything that does not decode."""
    if b"\0" in data[:SNIFF_BYTES]:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def guess_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "unknown"


def _refusal(error: OSError, path: str) -> PathRefused:
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
def _reasons(path: str) -> Iterator[None]:
    """Turn system errors into refusals with a clear reason."""
    try:
        yield
    except OSError as error:
        raise _refusal(error, path) from None


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    """The entry itself (never its symlink target), or None when there is none."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _join(parts: list[str]) -> str:
    """A path to show in a result or message (see `displayed`)."""
    return displayed("/".join(parts) or ".")


@dataclass
class _Search:
    """The running state of one search_files call."""

    matches: list[str] = field(default_factory=list)
    examined: int = 0
    full: bool = False
    too_many_entries: bool = False
    too_deep: bool = False


class Workspace:
    """One directory that every operation is confined to. Paths are relative to it and use '/'."""

    def __init__(self, root: str | os.PathLike[str], limits: Limits | None = None) -> None:
        self.root = os.path.realpath(root)  # a root reached through a symlink is resolved once, here
        self.limits = limits or Limits()
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        limits = self.limits
        self.quota = Quota(self._root_fd, limits.max_workspace_bytes, limits.max_workspace_entries, limits.max_depth)

    def close(self) -> None:
        os.close(self._root_fd)

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Resolving and opening

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
                        raise PathRefused(f"{shown(path)}: no such directory {_join(parts[: index + 1])!r}") from None
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
            entry = _lstat(part, fd)
            if entry is not None and stat.S_ISLNK(entry.st_mode):
                return PathRefused(f"{shown(path)}: a symlink in the path changed while it was being opened; refused")
            if entry is None or stat.S_ISDIR(entry.st_mode):
                return PathRefused(f"{shown(path)}: {part!r} changed while it was being opened; try again")
            return PathRefused(f"{shown(path)}: {part!r} is a {describe_mode(entry.st_mode)}, not a directory")
        return _refusal(error, path)

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

    # Reading

    def read_file(self, path: str) -> str:
        """The text of a file, or a one-line note when it is binary. Symlinks are followed only inside."""
        parts = split_path(path)
        real = self._resolve(parts, path)
        if not real:
            raise PathRefused(f"{shown(path)} is the workspace root, a directory; use list_directory")
        cap = self.limits.max_read_bytes
        with _reasons(path), self._directory(real[:-1], path) as dir_fd:
            entry = os.stat(real[-1], dir_fd=dir_fd, follow_symlinks=False)
            self._require_file(entry, path)  # never open a FIFO or a device, not even without blocking
            fd = os.open(real[-1], READ_FLAGS, dir_fd=dir_fd)
            try:
                opened = os.fstat(fd)  # what was opened (never through a symlink) may have been replaced since
                self._require_file(opened, path)
                if opened.st_size > cap:
                    raise PathRefused(self._too_big(path, opened.st_size))
                data = _read_at_most(fd, cap + 1)
            finally:
                os.close(fd)
        if len(data) > cap:
            raise PathRefused(self._too_big(path, len(data)))
        if looks_binary(data):
            kind = guess_type(real[-1])
            return f"[binary file {shown(path)}, {len(data)} bytes, type guessed from extension: {kind}; not shown]"
        return data.decode("utf-8")

    def _too_big(self, path: str, size: int) -> str:
        return f"{shown(path)} is {size} bytes, over the read limit of {self.limits.max_read_bytes} bytes"

    @staticmethod
    def _require_file(entry: os.stat_result, path: str) -> None:
        if stat.S_ISDIR(entry.st_mode):
            raise PathRefused(f"{shown(path)} is a directory; use list_directory")
        if not stat.S_ISREG(entry.st_mode):
            raise PathRefused(f"{shown(path)} is a {describe_mode(entry.st_mode)}, not a regular file; refused")

    def list_directory(self, path: str = ".") -> str:
        """One line per entry, directories first marked with '/', capped at `max_list_entries`."""
        parts = split_path(path)
        real = self._resolve(parts, path)
        cap = self.limits.max_list_entries
        lines: list[tuple[bool, str]] = []
        truncated = False
        with _reasons(path), self._directory(real, path) as dir_fd, os.scandir(dir_fd) as entries:
            for entry in entries:
                if len(lines) >= cap:
                    truncated = True
                    break
                with contextlib.suppress(FileNotFoundError):  # removed while being listed
                    lines.append(self._entry_line(entry))
        if not lines:
            return f"{shown(path)} is an empty directory"
        text = "\n".join(line for _, line in sorted(lines, key=lambda item: (not item[0], item[1])))
        if truncated:
            text += f"\n[truncated: showing {cap} entries; the directory has more]"
        return text

    @staticmethod
    def _entry_line(entry: os.DirEntry[str]) -> tuple[bool, str]:
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            return True, displayed(f"{entry.name}/")
        if stat.S_ISREG(info.st_mode):
            return False, f"{displayed(entry.name)} ({info.st_size} bytes)"
        return False, f"{displayed(entry.name)} [{describe_mode(info.st_mode)}]"

    def search_files(self, pattern: str, path: str = ".") -> str:
        """Names under a directory that match a glob (`*.md`), or contain a text (case-insensitive). Capped."""
        if not isinstance(pattern, str) or not pattern or "\0" in pattern or len(pattern) > MAX_NAME_BYTES:
            raise PathRefused(f"the pattern must be 1 to {MAX_NAME_BYTES} characters without null bytes")
        parts = split_path(path)
        real = self._resolve(parts, path)
        state = _Search()
        with _reasons(path), self._directory(real, path) as dir_fd:
            self._search_in(dir_fd, real, pattern, 0, state)
        lines = state.matches or [f"no names under {shown(path)} match {pattern!r}"]
        if state.full:
            lines.append(f"[truncated: showing the first {self.limits.max_search_results} matches]")
        if state.too_many_entries:
            lines.append(f"[stopped after examining {self.limits.max_search_entries} entries]")
        if state.too_deep:
            lines.append(f"[directories deeper than {self.limits.max_search_depth} levels were not searched]")
        return "\n".join(lines)

    def _search_in(self, dir_fd: int, parts: list[str], pattern: str, depth: int, state: _Search) -> None:
        glob = any(char in pattern for char in "*?[")
        budget = self.limits.max_search_entries - state.examined + 1
        with os.scandir(dir_fd) as listing:
            entries = sorted(itertools.islice(listing, budget), key=lambda entry: entry.name)
        for entry in entries:
            if state.full or state.too_many_entries:
                return
            if state.examined >= self.limits.max_search_entries:
                state.too_many_entries = True
                return
            state.examined += 1
            relative = "/".join([*parts, entry.name])  # matched as it is; shown through `displayed`
            is_dir = entry.is_dir(follow_symlinks=False)
            if glob:
                hit = fnmatch.fnmatchcase(entry.name, pattern) or fnmatch.fnmatchcase(relative, pattern)
            else:
                hit = pattern.lower() in entry.name.lower()
            if hit:
                state.matches.append(displayed(relative + ("/" if is_dir else "")))
                state.full = len(state.matches) >= self.limits.max_search_results
            if not is_dir:
                continue  # symlinks to directories are not descended into
            if depth + 1 >= self.limits.max_search_depth:
                state.too_deep = True
                continue
            try:
                child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # gone, swapped for a symlink, or unreadable: skip it
            try:
                self._search_in(child, [*parts, entry.name], pattern, depth + 1, state)
            finally:
                os.close(child)

    def file_info(self, path: str) -> str:
        """Type, size, modification time and permissions of one entry; a symlink is described, not followed out."""
        parts = split_path(path)
        if not parts:
            parent, name = [], "."
        else:
            parent, name = self._resolve(parts[:-1], path), parts[-1]
        with _reasons(path), self._directory(parent, path) as dir_fd:
            entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        modified = datetime.fromtimestamp(entry.st_mtime, UTC).isoformat(timespec="seconds")
        lines = [
            f"path: {_join(parts)}",
            f"type: {describe_mode(entry.st_mode)}",
            f"size: {entry.st_size} bytes",
            f"modified: {modified}",
            f"permissions: {stat.filemode(entry.st_mode)}",
        ]
        if stat.S_ISLNK(entry.st_mode):
            lines.append(f"target: {self._link_target(parts, path)}")
        elif stat.S_ISREG(entry.st_mode):
            lines.append(f"guessed type: {guess_type(name)}")
        return "\n".join(lines)

    def _link_target(self, parts: list[str], path: str) -> str:
        try:
            target = self._resolve(parts, path)
        except PathRefused:
            return "outside the workspace (never followed)"
        if not target:  # a link to the workspace root: there is no parent to open it from
            return ". (the workspace root, directory)"
        try:
            with self._directory(target[:-1], path) as dir_fd:
                entry = os.stat(target[-1], dir_fd=dir_fd, follow_symlinks=False)
        except (OSError, PathRefused):
            return f"{_join(target)} (missing)"
        return f"{_join(target)} ({describe_mode(entry.st_mode)})"

    # Changing

    def write_file(self, path: str, content: str) -> str:
        """Replace or create a file atomically: a temporary file in the same directory, fsync, then rename.

        Missing parent directories are created. A symlink at the destination is refused, never written through.
        """
        if not isinstance(content, str):
            raise PathRefused("content must be a string")
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError:
            raise PathRefused("content is not valid Unicode (lone surrogate); refused") from None
        if len(data) > self.limits.max_write_bytes:
            limit = self.limits.max_write_bytes
            raise PathRefused(f"content is {len(data)} bytes, over the write limit of {limit} bytes")
        parent, name = self._target(path, "name a file inside it")
        self.quota.require_depth(len(parent) + 1, shown(path))
        with _reasons(path), self.quota.changing():
            missing = self._missing(parent)
            if missing:
                self.quota.require(len(data), missing + 1)
            with self._directory(parent, path, create=True) as dir_fd:
                existing = _lstat(name, dir_fd)
                if existing is not None and stat.S_ISLNK(existing.st_mode):
                    raise PathRefused(f"{shown(path)} is a symlink; write_file never writes through symlinks")
                if existing is not None:
                    self._require_file(existing, path)
                if not missing:
                    old = existing.st_size if existing is not None else 0
                    self.quota.require(len(data) - old, 0 if existing is not None else 1)
                # the permissions are kept, but never setuid, setgid or sticky: new content must not inherit them
                mode = stat.S_IMODE(existing.st_mode) & 0o777 if existing is not None else 0o644
                self._replace(dir_fd, name, data, mode)
        return f"wrote {len(data)} bytes to {_join([*parent, name])}"

    @staticmethod
    def _replace(dir_fd: int, name: str, data: bytes, mode: int) -> None:
        temporary = f".{secrets.token_hex(8)}{TEMP_SUFFIX}"
        fd = os.open(temporary, TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            try:
                _write_all(fd, data)
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            # rename replaces whatever is at `name` (even a symlink swapped in since the check); it never follows it
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=dir_fd)
            raise
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)

    def create_directory(self, path: str) -> str:
        """Create a directory and any missing parents; an existing directory is fine."""
        parts = split_path(path)
        if not parts:
            return "the workspace root already exists"
        parent, name = self._resolve(parts[:-1], path), parts[-1]
        self.quota.require_depth(len(parent) + 1, shown(path))
        with _reasons(path), self.quota.changing():
            missing = self._missing([*parent, name])
            if missing:
                self.quota.require(0, missing)
            with self._directory(parent, path, create=True) as dir_fd:
                existing = _lstat(name, dir_fd)
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    raise PathRefused(f"{shown(path)} already exists as a {describe_mode(existing.st_mode)}")
                if existing is None:
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
        created = "already existed" if existing is not None else "created"
        return f"directory {_join([*parent, name])} {created}"

    def move_file(self, source: str, destination: str) -> str:
        """Move or rename a file or directory inside the workspace; an existing destination is not overwritten.

        A symlink is moved as a link; its target is never touched.
        """
        source_parent, source_name = self._target(source, "it cannot be moved")
        target_parent, target_name = self._target(destination, "nothing can be moved onto it")
        self.quota.require_depth(len(target_parent) + 1, shown(destination))
        with (
            _reasons(source),
            self.quota.lock,  # no change may deepen the tree between the depth check and the rename
            self._directory(source_parent, source) as source_fd,
            self._directory(target_parent, destination) as target_fd,
        ):
            if _lstat(source_name, source_fd) is None:
                raise PathRefused(f"{shown(source)}: no such file or directory")
            if _lstat(target_name, target_fd) is not None:
                raise PathRefused(f"{shown(destination)} already exists; move_file does not overwrite")
            self._require_room_below(source_fd, source_name, len(target_parent) + 1, source, destination)
            os.rename(source_name, target_name, src_dir_fd=source_fd, dst_dir_fd=target_fd)
        return f"moved {_join([*source_parent, source_name])} to {_join([*target_parent, target_name])}"

    def _require_room_below(self, dir_fd: int, name: str, levels: int, source: str, destination: str) -> None:
        """Refuse to move a directory to `levels` below the root when something in it would end up too deep."""
        try:
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        except OSError:
            return  # not a directory (a file, a symlink): nothing below it
        try:
            too_deep = deeper_than(fd, self.quota.max_depth - levels, self.limits.max_workspace_entries)
        finally:
            os.close(fd)
        if too_deep:
            raise QuotaExceeded(
                f"moving {shown(source)} to {shown(destination)} would put entries more than "
                f"{self.quota.max_depth} levels deep, the most the workspace allows"
            )

    def delete_file(self, path: str) -> str:
        """Delete one file (a symlink is removed itself, never its target). Directories are refused."""
        parent, name = self._target(path, "refusing to delete it")
        with _reasons(path), self.quota.changing(), self._directory(parent, path) as dir_fd:
            entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(entry.st_mode):
                raise PathRefused(f"{shown(path)} is a directory; delete_file deletes files (see delete_directory)")
            self.quota.release(entry.st_size if stat.S_ISREG(entry.st_mode) else 0, 1)
            os.unlink(name, dir_fd=dir_fd)
        return f"deleted {_join([*parent, name])}"

    def delete_directory(self, path: str, recursive: bool = False) -> str:
        """Delete one empty directory, or with `recursive` a directory and everything in it (the root: everything in
        it), a bounded number of entries per call. The root itself, symlinks and, unless recursive, non-empty
        directories are refused; a symlink inside is removed itself, never followed."""
        if recursive and not split_path(path):
            return self._empty_root(path)
        parent, name = self._target(path, "refusing to delete it (recursive=true empties it)")
        with _reasons(path), self.quota.changing(), self._directory(parent, path) as dir_fd:
            entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if not stat.S_ISDIR(entry.st_mode):
                kind = describe_mode(entry.st_mode)
                raise PathRefused(f"{shown(path)} is a {kind}, not a directory; use delete_file")
            removed = removal.Removed(finished=True)
            if recursive:
                with self._directory([*parent, name], path) as tree_fd:
                    removed = self._empty(tree_fd, path)
            if removed.finished:
                self.quota.release(0, 1)
                os.rmdir(name, dir_fd=dir_fd)
        shown_path = _join([*parent, name])
        if not removed.finished:
            return self._unfinished(removed, shown_path, [*parent, name])
        if not recursive:
            return f"deleted directory {shown_path}"
        return f"deleted directory {shown_path} and the {removed.entries} entries in it"

    def _empty_root(self, path: str) -> str:
        with _reasons(path), self.quota.changing():
            removed = self._empty(self._root_fd, path)
        if not removed.finished:
            return self._unfinished(removed, ".", [])
        return f"emptied the workspace root: deleted {removed.entries} entries"

    def _empty(self, dir_fd: int, path: str) -> removal.Removed:
        """Delete what is in a directory, at most `max_delete_entries` of it, and account for it in the quota."""
        self.quota.begin()
        try:
            removed = removal.empty(dir_fd, self.limits.max_delete_entries)
        except removal.RemovalFailed as failure:
            reason = _refusal(failure.error, path)
            raise PathRefused(f"{reason}; {failure.removed.entries} entries were deleted before it") from None
        self.quota.release(removed.bytes, removed.entries)
        return removed

    def _unfinished(self, removed: removal.Removed, shown_path: str, real: list[str]) -> str:
        """What a recursive delete that stopped at its limit says: what it did, and what is left."""
        try:
            with self._directory(real, shown_path) as dir_fd:
                left = count(dir_fd, self.limits.max_delete_entries, MAX_LEVELS)
            remaining = f"{left.entries} are left" if left.complete else f"more than {left.entries - 1} are left"
        except (OSError, PathRefused):
            remaining = "some are left"
        return (
            f"deleted {removed.entries} entries under {shown_path} and stopped (one call deletes at most "
            f"{self.limits.max_delete_entries}); {remaining}: call delete_directory again with recursive=true"
        )
