"""What a SQLite connection of the database server may do: the authorizer (reads, recursive CTEs, functions off the
deny-list, read-only schema pragmas and table-valued functions) and the progress handler that stops a query at its
deadline. Pure Python on `sqlite3`; used in the server process (schema tools) and in the query worker. Never imports
`host`.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from servers.database.guard import is_denied_function

# Read-only pragmas SQLAlchemy's inspector needs for get_schema, also callable as table-valued functions
# (`SELECT * FROM pragma_table_info('t')`); every other PRAGMA is refused.
SCHEMA_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "foreign_key_list", "index_list", "index_info", "index_xinfo"}
)
# Read-only table-valued functions a query may use. SQLite reports the first use of each of them on a connection as an
# UPDATE of sqlite_master (it registers the virtual table), which the authorizer refuses; `warm_up` makes that first
# use before the authorizer is installed, so afterwards only the reads are reported.
TABLE_FUNCTIONS = ("json_each('[]')", "json_tree('[]')", *(f"pragma_{name}('')" for name in sorted(SCHEMA_PRAGMAS)))
ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})

_ACTIONS = (
    "CREATE_INDEX CREATE_TABLE CREATE_TEMP_INDEX CREATE_TEMP_TABLE CREATE_TEMP_TRIGGER CREATE_TEMP_VIEW CREATE_TRIGGER",
    "CREATE_VIEW DELETE DROP_INDEX DROP_TABLE DROP_TEMP_INDEX DROP_TEMP_TABLE DROP_TEMP_TRIGGER DROP_TEMP_VIEW",
    "DROP_TRIGGER DROP_VIEW INSERT PRAGMA READ SELECT TRANSACTION UPDATE ATTACH DETACH ALTER_TABLE REINDEX ANALYZE",
    "CREATE_VTABLE DROP_VTABLE FUNCTION SAVEPOINT RECURSIVE",
)
ACTION_NAMES = {
    getattr(sqlite3, f"SQLITE_{name}"): name
    for line in _ACTIONS
    for name in line.split(" ")
    if hasattr(sqlite3, f"SQLITE_{name}")
}


class SqlitePolicy:
    """The authorizer and progress handler of one SQLite connection: reads only, and a deadline while a query runs."""

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.denied: str | None = None  # what the authorizer last refused, for the error message

    def authorize(self, action: int, arg1: str | None, arg2: str | None, database: str | None, source: Any) -> int:
        if action in ALLOWED_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION and arg2 is not None and not is_denied_function(arg2):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 is not None and arg1.lower() in SCHEMA_PRAGMAS:
            return sqlite3.SQLITE_OK
        self.denied = _describe(action, arg1, arg2)
        return sqlite3.SQLITE_DENY

    def progress(self) -> int:
        """Called by SQLite every few thousand instructions; non-zero aborts the statement."""
        return 1 if self.deadline is not None and time.monotonic() > self.deadline else 0

    def install(self, connection: sqlite3.Connection) -> None:
        """On a plain sqlite3 connection (the query worker's): table functions warmed up, then the policy."""
        for function in TABLE_FUNCTIONS:
            connection.execute(f"SELECT * FROM {function}").fetchall()
        connection.set_authorizer(self.authorize)
        connection.set_progress_handler(self.progress, 1000)


def _describe(action: int, arg1: str | None, arg2: str | None) -> str:
    if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
        allowed = ", ".join(function.split("(")[0] for function in TABLE_FUNCTIONS)
        return f"a table-valued function or virtual table that is not a known read-only one ({allowed})"
    detail = " ".join(part for part in (arg1, arg2) if part)
    return f"{ACTION_NAMES.get(action, str(action))} {detail}".strip()
