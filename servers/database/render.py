"""JSON rendering of database values that JSON lacks, for the database server's results. Never imports `host`.

Rules: datetime/date/time as ISO 8601; Decimal as a string (no precision lost); timedelta (intervals) as an ISO 8601
duration; bytes up to 1 KiB as "base64:<data>", longer as "<N bytes>"; UUID, IP addresses, ranges and anything else
unknown as str(); NaN and infinities as "NaN", "Infinity", "-Infinity"; lists, tuples and dicts element by element.
Text over 64 Ki characters is cut to its first 64 Ki characters plus "[... N more characters]"; a value nested more
than 100 levels deep (arrays, JSON) raises TooDeep.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

INLINE_BYTES = 1024
MAX_TEXT_CHARS = 64 * 1024
MAX_DEPTH = 100


class TooDeep(ValueError):
    """A value is nested too deeply to render (and to send as JSON)."""


def render(value: Any, depth: int = 0) -> Any:
    """A JSON-safe form of one value from a result row."""
    if depth > MAX_DEPTH:
        raise TooDeep(f"a value is nested more than {MAX_DEPTH} levels deep; select a part of it instead")
    if isinstance(value, str):
        return clip(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return iso_duration(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        if len(data) <= INLINE_BYTES:
            return "base64:" + base64.b64encode(data).decode("ascii")
        return f"<{len(data)} bytes>"
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {clip(str(key)): render(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render(item, depth + 1) for item in value]
    if callable(getattr(value, "items", None)):  # asyncpg.Record (a composite value)
        pairs: Any = value.items()
        return {clip(str(key)): render(item, depth + 1) for key, item in pairs}
    return clip(str(value))


def clip(text: str, length: int | None = None) -> str:
    """Text as it is shown: over MAX_TEXT_CHARS characters, the first MAX_TEXT_CHARS and how many more there were.
    `length` is the full text's length when `text` is already a cut of it (as the database sends it)."""
    length = len(text) if length is None else length
    if length <= MAX_TEXT_CHARS:
        return text
    return f"{text[:MAX_TEXT_CHARS]}[... {length - MAX_TEXT_CHARS} more characters]"


def iso_duration(value: dt.timedelta) -> str:
    """An ISO 8601 duration, e.g. "P1DT2H3M4.5S"; negative durations start with "-"."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    second_text = f"{seconds}.{value.microseconds:06d}".rstrip("0").rstrip(".") if value.microseconds else str(seconds)
    time = "".join(f"{amount}{unit}" for amount, unit in ((hours, "H"), (minutes, "M")) if amount) + (
        f"{second_text}S" if seconds or value.microseconds else ""
    )
    text = f"P{value.days}D" if value.days else "P"
    if time:
        text += "T" + time
    return sign + (text if text != "P" else "PT0S")
