"""PostgreSQL values cut in the database before they are fetched, so that `SELECT repeat('x', 1e9)` sends 64 KiB, not
1 GB, to the server. A read is wrapped as `SELECT <cut columns> FROM (<query>) AS q(c1, ...)`: text keeps its first
MAX_TEXT_CHARS + 1 characters and its length, bytea its first INLINE_BYTES + 1 bytes and its size, any other type that
is not small by nature is sent only when `pg_column_size` fits the result budget, with its size; then `assemble`
renders each row as `render` would have rendered the whole value. Never imports `host`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from servers.database.render import INLINE_BYTES, MAX_TEXT_CHARS, TooDeep, clip, render

WRAPPABLE_KINDS = frozenset({"select", "with", "values", "table"})  # statements that can be a subquery
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name", "citext", "unknown"})
JSON_TYPES = frozenset({"json", "jsonb"})
# Fixed size, or (numeric) bounded by PostgreSQL itself: fetched as they are.
SMALL_TYPES = frozenset(
    {"bool", "int2", "int4", "int8", "float4", "float8", "oid", "money", "date", "time", "timetz", "timestamp"}
    | {"timestamptz", "interval", "uuid", "inet", "cidr", "macaddr", "macaddr8", "char", "numeric", "void"}
)

Cut = Literal["none", "text", "bytes", "sized"]


@dataclass(frozen=True)
class Column:
    """One column of the original query: its name and type, and how it is cut."""

    name: str
    type_name: str
    cut: Cut

    @property
    def is_json(self) -> bool:
        return self.type_name in JSON_TYPES


def plan(attributes: Sequence[Any]) -> list[Column]:
    """How each column of a prepared statement (asyncpg attributes) is cut."""
    columns = []
    for attribute in attributes:
        name = attribute.type.name
        cut: Cut = "text" if name in TEXT_TYPES else "bytes" if name == "bytea" else "none"
        if cut == "none" and name not in SMALL_TYPES:
            cut = "sized"
        columns.append(Column(attribute.name, name, cut))
    return columns


def wrap(sql: str, columns: Sequence[Column], max_value_bytes: int) -> str:
    """The query with its values cut: for each cut column two outputs, the cut value and its full size."""
    names = ", ".join(f"c{index}" for index in range(len(columns)))
    outputs = []
    for index, column in enumerate(columns):
        value = f"q.c{index}"
        if column.cut == "text":
            outputs += [f"left({value}, {MAX_TEXT_CHARS + 1})", f"char_length({value})"]
        elif column.cut == "bytes":
            outputs += [f"substring({value} from 1 for {INLINE_BYTES + 1})", f"octet_length({value})"]
        elif column.cut == "sized":
            size = f"pg_column_size({value})"
            outputs += [f"CASE WHEN {size} <= {max_value_bytes} THEN {value} END", size]
        else:
            outputs.append(value)
    return f"SELECT {', '.join(outputs)} FROM (\n{sql}\n) AS q({names})"


def assemble(record: Sequence[Any], columns: Sequence[Column], max_value_bytes: int) -> list[Any]:
    """One row of the wrapped query, rendered as the original row would have been."""
    values: list[Any] = []
    position = 0
    for column in columns:
        value = record[position]
        if column.cut == "none":
            values.append(render(value))
            position += 1
            continue
        size = record[position + 1]
        position += 2
        if value is None and size is None:
            values.append(None)
        elif column.cut == "text":
            values.append(clip(str(value), length=size))
        elif column.cut == "bytes":
            values.append(render(value) if size <= INLINE_BYTES else f"<{size} bytes>")
        elif size > max_value_bytes:
            values.append(f"<a {column.type_name} value of {size} bytes: too large to send; select a part of it>")
        else:
            values.append(render_whole(value, column.is_json))
    return values


def render_whole(value: Any, is_json: bool) -> Any:
    """A value fetched whole; json and jsonb arrive as text and are sent as JSON."""
    if is_json and isinstance(value, str):
        try:
            return render(json.loads(value))
        except RecursionError:
            raise TooDeep("a JSON value is nested too deeply") from None
        except ValueError:
            return render(value)
    return render(value)
