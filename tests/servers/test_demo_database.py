"""The demo database shipped for the default mcp_servers.json is exactly what demo.sql describes."""

import sqlite3
from contextlib import closing
from pathlib import Path

from tests.conftest import ROOT

DEMO = ROOT / "servers" / "database"


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        return list(connection.iterdump())


def test_demo_db_is_built_from_demo_sql(tmp_path: Path) -> None:
    rebuilt = tmp_path / "demo.db"
    with closing(sqlite3.connect(rebuilt)) as connection:
        connection.executescript((DEMO / "demo.sql").read_text(encoding="utf-8"))
    assert dump(DEMO / "demo.db") == dump(rebuilt), "rebuild servers/database/demo.db from demo.sql"
