"""Emptying a directory tree, a bounded number of entries at a time. Every directory is opened from its parent's fd
with O_NOFOLLOW and every name is removed relative to its directory's fd, so a symlink is unlinked itself and never
followed, and nothing outside the tree is touched. Plain `os`; never imports MCP, `host`, `confine`
or `workspace` (only `quota`, for its flags).
"""

import errno
import itertools
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from .quota import DIR_FLAGS

BATCH = 256  # names read from a directory at a time
OPEN_LEVELS = 32  # directories held open at once; a deeper one is first moved up to the top of the tree
MOVED_PREFIX = ".mcpbot-deleting-"
GONE = (errno.ENOENT, errno.ENOTEMPTY, errno.ELOOP, errno.ENOTDIR, errno.EISDIR)  # changed under us: look again


class RemovalFailed(Exception):
    """An entry could not be removed. `error` is the system's reason, `removed` what had been deleted before."""

    def __init__(self, error: OSError, removed: "Removed") -> None:
        super().__init__(error)
        self.error = error
        self.removed = removed


@dataclass
class Removed:
    """What one call deleted: entries (files, directories, symlinks), the bytes of the regular files among them, and
    whether the tree is now empty."""

    entries: int = 0
    bytes: int = 0
    finished: bool = False


@dataclass
class _Frame:
    fd: int
    name: str  # its name in the directory of the frame below it
    names: list[str] = field(default_factory=list)


def empty(top_fd: int, budget: int) -> Removed:
    """Delete everything inside the directory at `top_fd` (not the directory itself), looking at no more than `budget`
    entries; `finished` says whether it is empty now.

    Depth costs no more than OPEN_LEVELS open directories: a directory deeper than that is renamed into the top
    directory (a name starting with MOVED_PREFIX) and emptied from there, so any tree can be emptied.
    """
    removed = Removed()
    frames = [_Frame(top_fd, "")]
    examined = 0
    try:
        while frames:
            frame = frames[-1]
            if not frame.names:
                with os.scandir(frame.fd) as listing:
                    frame.names = [entry.name for entry in itertools.islice(listing, BATCH)]
            if not frame.names:  # empty: remove it from its parent (the top directory itself stays)
                frames.pop()
                if not frames:
                    removed.finished = True
                    break
                os.close(frame.fd)
                _quietly(os.rmdir, frame.name, frames[-1].fd, removed, 0)
                continue
            if examined >= budget:
                break
            examined += 1
            name = frame.names.pop()
            try:
                info = os.stat(name, dir_fd=frame.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(info.st_mode):
                size = info.st_size if stat.S_ISREG(info.st_mode) else 0
                _quietly(os.unlink, name, frame.fd, removed, size)
            elif len(frames) > OPEN_LEVELS:
                moved = f"{MOVED_PREFIX}{secrets.token_hex(8)}"
                os.rename(name, moved, src_dir_fd=frame.fd, dst_dir_fd=top_fd)
            else:
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=frame.fd)
                except OSError as error:
                    if error.errno not in GONE:  # a symlink swapped in is found again, and unlinked, next listing
                        raise
                    continue
                frames.append(_Frame(child, name))
    except OSError as error:
        raise RemovalFailed(error, removed) from None
    finally:
        for frame in frames[1:]:
            os.close(frame.fd)
    return removed


def _quietly(remove: Callable[..., None], name: str, dir_fd: int, removed: Removed, size: int) -> None:
    """Remove one entry (`os.unlink` or `os.rmdir`) and count it; one that changed meanwhile is left for the next
    listing to find."""
    try:
        remove(name, dir_fd=dir_fd)
    except OSError as error:
        if error.errno not in GONE:
            raise
        return
    removed.entries += 1
    removed.bytes += size
