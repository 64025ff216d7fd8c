"""The workspace quota: total bytes of regular files, number of entries (files, directories, symlinks, anything) and
depth in levels. The workspace is counted once, by a bounded fd walk that never follows a symlink, when a change
first needs it; after that every change the server makes moves a running total, under one lock. Plain `os`; never
imports MCP, `host` or another module of this package.
"""

import contextlib
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LEVELS = 128  # a walk holds two fds a level (its own and scandir's), so depth options stop here


class QuotaExceeded(Exception):
    """A change the quota refuses. The message says what the quota is, how much is left and what was asked for."""


def walk(dir_fd: int, levels: int) -> Iterator[tuple[int, os.stat_result]]:
    """(depth, lstat) of every entry under a directory, depth first; its own entries are depth 1.

    Directories are opened from their parent's fd with O_NOFOLLOW, so a symlink is an entry, never a way out; those
    at depth `levels` are not entered. An entry that vanishes, or a directory that cannot be opened, is passed over.
    Stop early by closing the iterator (or leaving the loop): every fd it opened is closed.
    """
    stack: list[tuple[int, Iterator[os.DirEntry[str]]]] = []
    try:
        stack.append((-1, os.scandir(dir_fd)))  # -1: the caller's fd, not ours to close
        while stack:
            fd, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                _close(stack.pop())
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            depth = len(stack)
            yield depth, info
            if not stat.S_ISDIR(info.st_mode) or depth >= levels:
                continue
            try:
                child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd if fd == -1 else fd)
            except OSError:  # gone, replaced by a symlink or a file, or unreadable
                continue
            try:
                stack.append((child, os.scandir(child)))
            except OSError:
                os.close(child)
    finally:
        for frame in stack:
            _close(frame)


def _close(frame: tuple[int, Iterator[os.DirEntry[str]]]) -> None:
    fd, entries = frame
    entries.close()  # type: ignore[attr-defined]  # os.scandir's iterator has close()
    if fd != -1:
        os.close(fd)


@dataclass(frozen=True)
class Usage:
    """What a walk found. `complete` is False when it stopped early: too many entries, or deeper than it looked."""

    bytes: int
    entries: int
    complete: bool


def count(dir_fd: int, max_entries: int, levels: int) -> Usage:
    """Bytes and entries under a directory: at most `max_entries + 1` entries and `levels + 1` levels are looked at."""
    total = entries = 0
    complete = True
    for depth, info in walk(dir_fd, levels + 1):
        if depth > levels:
            complete = False  # deeper than the server can go: made outside it, and only counted this far
        entries += 1
        if stat.S_ISREG(info.st_mode):
            total += info.st_size
        if entries > max_entries:
            return Usage(total, entries, complete=False)
    return Usage(total, entries, complete)


def deeper_than(dir_fd: int, levels: int, max_entries: int) -> bool:
    """True when something under a directory is more than `levels` below it (looks at most `max_entries` entries)."""
    for seen, (depth, _) in enumerate(walk(dir_fd, levels + 1)):
        if depth > levels or seen >= max_entries:
            return depth > levels
    return False


class Quota:
    """Caps on a workspace's bytes, entries and depth, and the running total of what it holds.

    Every change runs inside `changing()`, which holds the lock, counts the workspace if it has not been counted,
    and applies what `require` and `release` recorded when the change ends. A change that fails after recording
    leaves the total unknown, so the workspace is counted again when next needed. Changes made outside the server
    are seen at the next count: at start-up, after a failed change, or after a delete while the count was partial.
    """

    def __init__(self, root_fd: int, max_bytes: int, max_entries: int, max_depth: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_depth = max_depth
        self.lock = threading.Lock()
        self._root_fd = root_fd
        self._usage: Usage | None = None
        self._pending: tuple[int, int] | None = None

    def usage(self) -> Usage:
        """The current total, counting the workspace first if needed."""
        with self.lock:
            return self._counted()

    def _counted(self) -> Usage:
        if self._usage is None:
            self._usage = count(self._root_fd, self.max_entries, self.max_depth)
        return self._usage

    @contextlib.contextmanager
    def changing(self) -> Iterator[None]:
        """Hold the lock for one change, and account for it when it ends."""
        with self.lock:
            self._counted()
            self._pending = None
            try:
                yield
            except BaseException:
                if self._pending is not None:  # it may have changed something: count again next time
                    self._usage = None
                raise
            finally:
                pending = self._take_pending()
            if pending is not None and self._usage is not None:
                self._apply(self._usage, pending[0], pending[1])

    def _take_pending(self) -> tuple[int, int] | None:
        """What `require` and `release` recorded for the change now ending, cleared. A method, so that a type
        checker does not take the field for the None it was set to before the change ran."""
        pending, self._pending = self._pending, None
        return pending

    def _apply(self, usage: Usage, add_bytes: int, add_entries: int) -> None:
        if not usage.complete and (add_bytes < 0 or add_entries < 0):
            self._usage = None  # a partial count cannot go down: count again next time
            return
        self._usage = Usage(max(0, usage.bytes + add_bytes), max(0, usage.entries + add_entries), usage.complete)

    def require(self, add_bytes: int, add_entries: int) -> None:
        """Refuse a change that would take the workspace over its quota; otherwise record it. Inside `changing()`."""
        usage = self._counted()
        if add_bytes > 0 and usage.bytes + add_bytes > self.max_bytes:
            left = max(0, self.max_bytes - usage.bytes)
            raise QuotaExceeded(
                f"the workspace quota is {self.max_bytes} bytes and {left} are left; this write needs {add_bytes}"
            )
        if add_entries > 0 and usage.entries + add_entries > self.max_entries:
            left = max(0, self.max_entries - usage.entries)
            raise QuotaExceeded(
                f"the workspace may hold {self.max_entries} entries (files, directories, symlinks) and {left} are "
                f"left; this needs {add_entries}"
            )
        self._record(add_bytes, add_entries)

    def begin(self) -> None:
        """Record that a change whose size is known only afterwards starts now (a failure then means a recount)."""
        self._record(0, 0)

    def release(self, freed_bytes: int, freed_entries: int) -> None:
        """Record that a change removed bytes and entries. Inside `changing()`, before the change is made."""
        self._record(-freed_bytes, -freed_entries)

    def _record(self, add_bytes: int, add_entries: int) -> None:
        before = self._pending or (0, 0)
        self._pending = (before[0] + add_bytes, before[1] + add_entries)

    def require_depth(self, levels: int, what: str) -> None:
        """Refuse an entry `levels` below the root (1: directly in it) when that is deeper than the limit."""
        if levels > self.max_depth:
            raise QuotaExceeded(f"{what} would be {levels} levels deep; the workspace allows at most {self.max_depth}")
