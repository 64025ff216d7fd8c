"""A stdio server's stderr as the bot reads it: a line of any length costs the bot a bounded amount of memory."""

import os
import threading
import tracemalloc

from host.mcp.stderr import StderrTail


def test_a_50_mb_stderr_line_is_read_in_bounded_memory_and_kept_short() -> None:
    tail = StderrTail("noisy")
    block = b"e" * (1 << 20)

    def write() -> None:
        for _ in range(50):
            os.write(tail.writer.fileno(), block)
        os.write(tail.writer.fileno(), b"\nafter the long line\n")
        tail.close_writer()

    tracemalloc.start()
    try:
        writer = threading.Thread(target=write)
        writer.start()
        writer.join(timeout=30)
        tail._thread.join(timeout=30)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not tail._thread.is_alive()
    assert peak < 2 * 1024 * 1024, f"{peak:,} bytes at the peak"  # main: over 100 MB
    first, second = tail.tail().split(" | ")
    assert (first, second) == ("e" * 2000, "after the long line")
