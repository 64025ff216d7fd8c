"""The Workspace and its file operations (read, list, search, info, write, create, move, delete) and their Limits,
built on `confine` (every path is opened through it), `quota` (what the workspace may hold) and `removal`
(recursive deletes). Plain `os`; never imports MCP or `host`.
"""

import contextlib
import fnmatch
import itertools
import os
import secrets
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import removal
from .confine import (
    DIR_FLAGS,
    MAX_NAME_BYTES,
    MIB,
    READ_FLAGS,
    TEMP_FLAGS,
    Confined,
    PathRefused,
    join,
    lstat,
    read_at_most,
    reasons,
    refusal,
    split_path,
    write_all,
)
from .display import describe_mode, displayed, guess_type, looks_binary, shown
from .quota import MAX_LEVELS, Quota, QuotaExceeded, count, deeper_than

GIB = 1024 * MIB
TEMP_SUFFIX = ".mcpbot-tmp"


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


@dataclass
class _Search:
    """The running state of one search_files call."""

    matches: list[str] = field(default_factory=list)
    examined: int = 0
    full: bool = False
    too_many_entries: bool = False
    too_deep: bool = False


class Workspace(Confined):
    """One directory that every operation is confined to. Paths are relative to it and use '/'."""

    def __init__(self, root: str | os.PathLike[str], limits: Limits | None = None) -> None:
        super().__init__(root)
        self.limits = limits or Limits()
        limits = self.limits
        self.quota = Quota(self._root_fd, limits.max_workspace_bytes, limits.max_workspace_entries, limits.max_depth)

    # Reading

    def read_file(self, path: str) -> str:
        """The text of a file, or a one-line note when it is binary. Symlinks are followed only inside."""
        parts = split_path(path)
        real = self._resolve(parts, path)
        if not real:
            raise PathRefused(f"{shown(path)} is the workspace root, a directory; use list_directory")
        cap = self.limits.max_read_bytes
        with reasons(path), self._directory(real[:-1], path) as dir_fd:
            entry = os.stat(real[-1], dir_fd=dir_fd, follow_symlinks=False)
            self._require_file(entry, path)  # never open a FIFO or a device, not even without blocking
            fd = os.open(real[-1], READ_FLAGS, dir_fd=dir_fd)
            try:
                opened = os.fstat(fd)  # what was opened (never through a symlink) may have been replaced since
                self._require_file(opened, path)
                if opened.st_size > cap:
                    raise PathRefused(self._too_big(path, opened.st_size))
                data = read_at_most(fd, cap + 1)
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
        with reasons(path), self._directory(real, path) as dir_fd, os.scandir(dir_fd) as entries:
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
        with reasons(path), self._directory(real, path) as dir_fd:
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
        with reasons(path), self._directory(parent, path) as dir_fd:
            entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        modified = datetime.fromtimestamp(entry.st_mtime, UTC).isoformat(timespec="seconds")
        lines = [
            f"path: {join(parts)}",
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
            return f"{join(target)} (missing)"
        return f"{join(target)} ({describe_mode(entry.st_mode)})"

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
        with reasons(path), self.quota.changing():
            missing = self._missing(parent)
            if missing:
                self.quota.require(len(data), missing + 1)
            with self._directory(parent, path, create=True) as dir_fd:
                existing = lstat(name, dir_fd)
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
        return f"wrote {len(data)} bytes to {join([*parent, name])}"

    @staticmethod
    def _replace(dir_fd: int, name: str, data: bytes, mode: int) -> None:
        temporary = f".{secrets.token_hex(8)}{TEMP_SUFFIX}"
        fd = os.open(temporary, TEMP_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            try:
                write_all(fd, data)
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
        with reasons(path), self.quota.changing():
            missing = self._missing([*parent, name])
            if missing:
                self.quota.require(0, missing)
            with self._directory(parent, path, create=True) as dir_fd:
                existing = lstat(name, dir_fd)
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    raise PathRefused(f"{shown(path)} already exists as a {describe_mode(existing.st_mode)}")
                if existing is None:
                    os.mkdir(name, 0o755, dir_fd=dir_fd)
        created = "already existed" if existing is not None else "created"
        return f"directory {join([*parent, name])} {created}"

    def move_file(self, source: str, destination: str) -> str:
        """Move or rename a file or directory inside the workspace; an existing destination is not overwritten.

        A symlink is moved as a link; its target is never touched.
        """
        source_parent, source_name = self._target(source, "it cannot be moved")
        target_parent, target_name = self._target(destination, "nothing can be moved onto it")
        self.quota.require_depth(len(target_parent) + 1, shown(destination))
        with (
            reasons(source),
            self.quota.lock,  # no change may deepen the tree between the depth check and the rename
            self._directory(source_parent, source) as source_fd,
            self._directory(target_parent, destination) as target_fd,
        ):
            if lstat(source_name, source_fd) is None:
                raise PathRefused(f"{shown(source)}: no such file or directory")
            if lstat(target_name, target_fd) is not None:
                raise PathRefused(f"{shown(destination)} already exists; move_file does not overwrite")
            self._require_room_below(source_fd, source_name, len(target_parent) + 1, source, destination)
            os.rename(source_name, target_name, src_dir_fd=source_fd, dst_dir_fd=target_fd)
        return f"moved {join([*source_parent, source_name])} to {join([*target_parent, target_name])}"

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
        with reasons(path), self.quota.changing(), self._directory(parent, path) as dir_fd:
            entry = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISDIR(entry.st_mode):
                raise PathRefused(f"{shown(path)} is a directory; delete_file deletes files (see delete_directory)")
            self.quota.release(entry.st_size if stat.S_ISREG(entry.st_mode) else 0, 1)
            os.unlink(name, dir_fd=dir_fd)
        return f"deleted {join([*parent, name])}"

    def delete_directory(self, path: str, recursive: bool = False) -> str:
        """Delete one empty directory, or with `recursive` a directory and everything in it (the root: everything in
        it), a bounded number of entries per call. The root itself, symlinks and, unless recursive, non-empty
        directories are refused; a symlink inside is removed itself, never followed."""
        if recursive and not split_path(path):
            return self._empty_root(path)
        parent, name = self._target(path, "refusing to delete it (recursive=true empties it)")
        with reasons(path), self.quota.changing(), self._directory(parent, path) as dir_fd:
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
        shown_path = join([*parent, name])
        if not removed.finished:
            return self._unfinished(removed, shown_path, [*parent, name])
        if not recursive:
            return f"deleted directory {shown_path}"
        return f"deleted directory {shown_path} and the {removed.entries} entries in it"

    def _empty_root(self, path: str) -> str:
        with reasons(path), self.quota.changing():
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
            reason = refusal(failure.error, path)
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
