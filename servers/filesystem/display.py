"""How names, paths and file kinds are shown in results and messages: quoting, shortening and marking names that are
not UTF-8, a mode in words, binary sniffing and type guessing. A leaf: imports nothing from this package, nor MCP
or `host`.
"""

import mimetypes
import stat

SNIFF_BYTES = 8192
SHOWN_CHARS = 120
NOT_UTF8 = " [name is not valid UTF-8]"


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
