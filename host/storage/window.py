"""StoredMessage, and the trim that fits the newest messages into a token budget without splitting a tool call.

Pure: no database, no I/O. Imports nothing from the host.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One chat message in OpenAI form with its token count; `id` and `created_at` are set by the store."""

    role: Role
    content: str | None
    tool_calls: list[dict[str, Any]] | None
    tool_call_id: str | None
    token_count: int
    id: int | None = None
    created_at: datetime | None = None


def fit_window(newest_first: Sequence[StoredMessage], max_tokens: int) -> list[StoredMessage]:
    """The newest whole units (a message, or a tool call with all its results) within max_tokens, oldest first.

    Tool results whose call is not in `newest_first` are dropped, and so is a call missing any result, so
    the window never starts with a tool message nor holds an unanswered call. The window stops at the first
    unit (from the newest) that does not fit: it never skips one to take an older one.
    """
    kept: list[list[StoredMessage]] = []
    budget = max_tokens
    for unit in reversed(_units(list(reversed(newest_first)))):
        cost = sum(message.token_count for message in unit)
        if cost > budget:
            break
        budget -= cost
        kept.append(unit)
    return [message for unit in reversed(kept) for message in unit]


def _units(chronological: list[StoredMessage]) -> list[list[StoredMessage]]:
    """Split into units, oldest first: single messages, and complete tool-call groups."""
    units: list[list[StoredMessage]] = []
    group: list[StoredMessage] | None = None
    pending: set[Any] = set()
    for message in chronological:
        if message.role == "tool":
            if group is not None and message.tool_call_id in pending:
                group.append(message)
                pending.discard(message.tool_call_id)
                if not pending:
                    units.append(group)
                    group = None
            continue  # a result whose call is outside the window (or unknown) is dropped
        group = None  # a call still missing results is dropped here
        if message.role == "assistant" and message.tool_calls:
            group = [message]
            pending = {call.get("id") for call in message.tool_calls}
            continue
        units.append([message])
    return units
