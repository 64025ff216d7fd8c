"""What every query of the database server is held to, on both backends. Never imports `host` (nor SQLAlchemy: the
SQLite worker process reads it too)."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What every query is held to."""

    row_limit: int = 500
    statement_timeout: float = 10.0
    max_query_length: int = 20_000
    max_result_bytes: int = 4 * MIB  # rows, as compact JSON, that one result may hold
    max_concurrent_queries: int = 4  # queries running at once; more are refused at once, never queued
    max_value_bytes: int = 16 * MIB  # longest string or blob a SQLite query may make or read (SQLITE_LIMIT_LENGTH)
    max_query_memory: int = 512 * MIB  # address space of the process one SQLite query runs in
    work_mem: str = "4MB"  # PostgreSQL: memory of each sort or hash before it spills to temporary files
    temp_file_limit: str = "256MB"  # PostgreSQL: temporary file space of one query (where the role may set it)
