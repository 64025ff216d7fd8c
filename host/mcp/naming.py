"""Model-facing tool names: `server__tool`, legal for OpenAI-compatible APIs and unique in one catalogue.

Names are looked up in a table, never parsed back. Pure functions; imports nothing from the host.
"""

import hashlib
import re
from collections.abc import Container

MAX_NAME = 64
_ILLEGAL = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_LENGTH = 8


def model_name(server: str, tool: str, taken: Container[str]) -> str:
    """The name the model sees for (server, tool); adds a short stable hash when it had to change or clash."""
    plain = f"{server}__{tool}"
    if _ILLEGAL.search(plain) is None and len(plain) <= MAX_NAME and plain not in taken:
        return plain
    digest = hashlib.sha256(f"{server}\x00{tool}".encode()).hexdigest()
    prefix = _ILLEGAL.sub("_", plain)
    for length in range(_HASH_LENGTH, len(digest) + 1):
        candidate = f"{prefix[: MAX_NAME - length - 1]}_{digest[:length]}"
        if candidate not in taken:
            return candidate
    raise ValueError(f"cannot name tool {tool!r} of server {server!r} uniquely")  # needs a SHA-256 collision
