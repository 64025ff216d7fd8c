"""Conversation-store fixtures shared by the storage and engine tests: a SQLite file under tmp_path, or a
throw-away PostgreSQL database made for the test module. Imported by those folders' conftest.py files."""

import random
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.postgres import create_database, drop_databases


def _in_thread(function: Callable[[], Awaitable[Any]]) -> Any:
    """Run async set-up or tear-down from a sync fixture, whatever event loop the test runner holds."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, function).result(timeout=60)


class ThrowAwayDatabases:
    """Creates PostgreSQL databases named mcpbot_storetest_<random>; drops them all at the end."""

    def __init__(self) -> None:
        self.base_url = ""
        self.urls: list[str] = []
        self._shared: str | None = None

    def create(self, base_url: str) -> str:
        self.base_url = base_url
        url: str = _in_thread(lambda: create_database(base_url, "mcpbot_storetest"))
        self.urls.append(url)
        return url

    def shared(self, base_url: str) -> str:
        if self._shared is None:
            self._shared = self.create(base_url)
        return self._shared

    def drop_all(self) -> None:
        _in_thread(lambda: drop_databases(self.base_url, self.urls))


@pytest.fixture(scope="module")
def databases() -> Iterator[ThrowAwayDatabases]:
    made = ThrowAwayDatabases()
    yield made
    made.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path, databases: ThrowAwayDatabases) -> str:
    """A database shared by this module's tests on PostgreSQL; a fresh file per test on SQLite."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/data/mcpbot.db"
    return databases.shared(request.getfixturevalue("postgres_url"))


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path, databases: ThrowAwayDatabases) -> str:
    """A database nobody has touched: a file that does not exist yet, or a new PostgreSQL database."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/fresh/nested/mcpbot.db"
    return databases.create(request.getfixturevalue("postgres_url"))


@pytest.fixture
def new_id() -> Callable[[], int]:
    """Ids no other test in the shared database uses (chats, users, updates)."""
    return lambda: random.getrandbits(48)
