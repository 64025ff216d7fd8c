"""Conversation-store fixtures shared by the storage and engine tests: a SQLite file under tmp_path, or a
throw-away PostgreSQL database made for the test module. Imported by those folders' conftest.py files."""

import random
import secrets
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from sqlalchemy.engine import make_url


def _in_thread(function: Callable[[], Awaitable[Any]]) -> Any:
    """Run async set-up or tear-down from a sync fixture, whatever event loop the test runner holds."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, function).result(timeout=60)


class ThrowAwayDatabases:
    """Creates PostgreSQL databases named mcpbot_storetest_<random>; drops them all at the end."""

    def __init__(self) -> None:
        self.base_url: str | None = None
        self.names: list[str] = []
        self._shared: str | None = None

    def create(self, base_url: str) -> str:
        name = f"mcpbot_storetest_{secrets.token_hex(4)}"
        self.base_url = base_url

        async def create() -> None:
            connection = await asyncpg.connect(_dsn(base_url))
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        _in_thread(create)
        self.names.append(name)
        return make_url(base_url).set(database=name).render_as_string(hide_password=False)

    def shared(self, base_url: str) -> str:
        if self._shared is None:
            self._shared = self.create(base_url)
        return self._shared

    def drop_all(self) -> None:
        if not self.names or self.base_url is None:
            return
        base_url = self.base_url

        async def drop() -> None:
            connection = await asyncpg.connect(_dsn(base_url))
            try:
                for name in self.names:
                    await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await connection.close()

        _in_thread(drop)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


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
