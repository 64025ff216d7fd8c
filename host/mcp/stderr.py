"""A stdio server's stderr: forwarded to our log line by line, its last lines kept to explain a failure.

A pipe read by a daemon thread, since the SDK hands the child a file descriptor. Imports nothing from the host.
"""

import collections
import os
import threading
from typing import TextIO

import structlog

_TAIL_LINES = 20
_MAX_LINE = 2000

log = structlog.get_logger("host.mcp.stderr")


class StderrTail:
    """Open before spawning the child; `writer` goes to the child; `close_writer()` once it has it."""

    def __init__(self, server: str) -> None:
        read_fd, write_fd = os.pipe()
        self.writer: TextIO = os.fdopen(write_fd, "w")
        self._reader = os.fdopen(read_fd, "r", encoding="utf-8", errors="replace")
        self._server = server
        self._lines: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._thread = threading.Thread(target=self._pump, name=f"stderr-{server}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        with self._reader:
            for line in self._reader:
                line = line.rstrip()[:_MAX_LINE]
                if line:
                    self._lines.append(line)
                    log.debug("server_stderr", server=self._server, line=line)

    def close_writer(self) -> None:
        """Drop our copy of the write end, so that the reader ends when the child does."""
        if not self.writer.closed:
            self.writer.close()

    def tail(self, lines: int = 3) -> str:
        """The last few lines the server wrote, joined; empty when it wrote nothing."""
        return " | ".join(list(self._lines)[-lines:])
