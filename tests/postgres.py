"""Throw-away PostgreSQL databases for tests and benchmarks: created on this machine's server under a random
name, dropped afterwards, so that nobody else's data is touched."""

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url


def _admin_dsn(base_url: str) -> str:
    """The SQLAlchemy URL as a plain libpq DSN for asyncpg."""
    return make_url(base_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(base_url: str, prefix: str, setup: str = "") -> str:
    """A new database `<prefix>_<random>` on the server of `base_url`, with `setup` run in it; its
    postgresql+asyncpg URL. Raises OSError or asyncpg.PostgresError when the server cannot be reached."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(_admin_dsn(base_url), timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(base_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(False)
    if setup:
        connection = await asyncpg.connect(_admin_dsn(url), timeout=10)
        try:
            await connection.execute(setup)
        finally:
            await connection.close()
    return url


async def drop_databases(base_url: str, urls: list[str]) -> None:
    """Drop databases `create_database` made on the server of `base_url`, closing their connections."""
    if not urls:
        return
    admin = await asyncpg.connect(_admin_dsn(base_url), timeout=10)
    try:
        for url in urls:
            await admin.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def throwaway_database(base_url: str, prefix: str, setup: str = "") -> AsyncIterator[str]:
    """`create_database` for the length of a `with` block."""
    url = await create_database(base_url, prefix, setup)
    try:
        yield url
    finally:
        await drop_databases(base_url, [url])


READER_GRANTS = """
GRANT CONNECT ON DATABASE "{database}" TO {role};
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};
"""


@asynccontextmanager
async def read_only_role(database_url: str, setup: str = "") -> AsyncIterator[str]:
    """A throw-away LOGIN role `mcpbot_reader_<random>` that may only read the database at `database_url`, for the
    length of a `with` block: its postgresql+asyncpg URL. `setup` runs as the admin with `{role}` filled in (to grant
    more, e.g. `GRANT SET ON PARAMETER temp_file_limit TO {role}`). Dropped afterwards, its sessions closed."""
    role = f"mcpbot_reader_{secrets.token_hex(6)}"
    database = make_url(database_url).database
    admin = await asyncpg.connect(_admin_dsn(database_url), timeout=10)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN")
        await admin.execute(READER_GRANTS.format(database=database, role=role) + setup.format(role=role))
    finally:
        await admin.close()
    try:
        yield make_url(database_url).set(username=role).render_as_string(False)
    finally:
        admin = await asyncpg.connect(_admin_dsn(database_url), timeout=10)
        try:
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
            await admin.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
        finally:
            await admin.close()
