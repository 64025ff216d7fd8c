"""A stdio server's stderr: forwarded to our log line by line, its last lines kept to explain a failure.

A pipe read in bounded chunks by a daemon thread, since the SDK hands the child a file descriptor: a line of
any length costs at most `_MAX_LINE` characters. Imports nothing from the host.
"""

import collections
import os
import threading
from typing import TextIO

import structlog

_TAIL_LINES = 20
_MAX_LINE = 2000
_CHUNK = 64 * 1024

log = structlog.get_logger("host.mcp.stderr")


class StderrTail:
    """Open before spawning the child; `writer` goes to the child; `close_writer()` once it has it."""

    def __init__(self, server: str) -> None:
        read_fd, write_fd = os.pipe()
        self.writer: TextIO = os.fdopen(write_fd, "w")
        self._read_fd = read_fd
        self._server = server
        self._lines: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._thread = threading.Thread(target=self._pump, name=f"stderr-{server}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        """Read until the child's end closes; keep the first `_MAX_LINE` bytes of each line, drop the rest."""
        line = bytearray()
        try:
            while chunk := os.read(self._read_fd, _CHUNK):
                *ended, rest = chunk.split(b"\n")
                for piece in ended:
                    self._add(line + piece[: max(0, _MAX_LINE - len(line))])
                    line.clear()
                line += rest[: max(0, _MAX_LINE - len(line))]
            self._add(line)
        finally:
            os.close(self._read_fd)

    def _add(self, raw: bytes | bytearray) -> None:
        line = bytes(raw).decode("utf-8", errors="replace").rstrip()
        if line:
            self._lines.append(line)
            log.debug("server_stderr", server=self._server, line=line)

    def close_writer(self) -> None:
        """Drop our copy of the write end, so that the reader ends when the child does."""
        if not self.writer.closed:
            self.writer.close()

    def drained(self, timeout: float) -> None:
        """Wait (in a worker thread) up to `timeout` seconds for the reader to reach the end: after the child
        exited, its last lines may still be in the pipe (a grandchild holding it open costs only the timeout)."""
        self._thread.join(timeout)

    def tail(self, lines: int = 3) -> str:
        """The last few lines the server wrote, joined; empty when it wrote nothing."""
        return " | ".join(list(self._lines)[-lines:])
