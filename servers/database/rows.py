"""Rows as a result holds them: rendered, collected until the row limit or the byte budget, and fetched in batches
sized from the largest row so far. Also the error every query path raises. Never imports `host`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from servers.database.limits import Limits
from servers.database.render import TooDeep

TOO_DEEP = "a value is nested too deeply to send; select a part of it instead"


class QueryError(Exception):
    """The database refused or failed the query; the message says why."""


class Rows:
    """Rendered rows, collected until the row limit or the byte budget (their size as compact JSON) is reached."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.rows: list[list[Any]] = []
        self.size = 2  # the enclosing "[]"
        self.largest_fetched = 1  # characters and bytes in the largest row fetched so far, to size the next batch
        self.note: str | None = None  # why the result was cut short

    @property
    def full(self) -> bool:
        return self.note is not None

    def batch(self) -> int:
        """How many rows to fetch next: one first, then as many as the budget would hold if they were as large as the
        largest so far, so that huge values are fetched one row at a time."""
        left = self.limits.row_limit + 1 - len(self.rows)
        if not self.rows:
            return 1
        return max(1, min(left, (self.limits.max_result_bytes - self.size) // self.largest_fetched))

    def add(self, values: Sequence[Any], render_value: Callable[[Any, int], Any]) -> None:
        if self.full:
            return
        limit = self.limits.row_limit
        if len(self.rows) >= limit:
            self.note = f"the query has more than {limit} rows; showing the first {limit}: add WHERE or LIMIT"
            return
        try:
            self.largest_fetched = max(self.largest_fetched, sum(map(_fetched_size, values)))
            row = [render_value(value, index) for index, value in enumerate(values)]
            size = len(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        except (TooDeep, RecursionError):
            raise QueryError(TOO_DEEP) from None
        budget = self.limits.max_result_bytes
        if self.size + size > budget:
            self.note = (f"the result reached the {budget}-byte limit after {len(self.rows)} rows: select fewer or "
                         "narrower columns, or add LIMIT")  # fmt: skip
            return
        self.rows.append(row)
        self.size += size


def _fetched_size(value: Any) -> int:
    """Roughly what a fetched value holds in memory: its length for text and bytes."""
    if isinstance(value, str | bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, list | tuple):
        return 8 + sum(map(_fetched_size, value))
    return 8
