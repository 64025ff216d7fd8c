"""Whether the PostgreSQL role the server connects as may do more than read: a superuser, the owner of a table, a
role that may write a table or create in a schema, or a member of the roles that reach the server's files and
programs. The server refuses to start as such a role unless told otherwise (--allow-privileged-role). Never imports
`host`.
"""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

CHECK_TIMEOUT_SECONDS = 10.0
FILE_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")
USER_RELATIONS = """FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"""
# One row per kind of privilege the role holds, with up to three examples.
PRIVILEGES_QUERY = f"""
SELECT 'is a superuser', NULL FROM pg_roles WHERE rolname = current_user AND rolsuper
UNION ALL
SELECT 'owns', string_agg(name, ', ') FROM (SELECT format('%I.%I', n.nspname, c.relname) AS name {USER_RELATIONS}
    AND pg_has_role(current_user, c.relowner, 'USAGE') ORDER BY 1 LIMIT 3) o HAVING count(*) > 0
UNION ALL
SELECT 'may write (INSERT, UPDATE, DELETE or TRUNCATE)', string_agg(name, ', ') FROM (
    SELECT format('%I.%I', n.nspname, c.relname) AS name {USER_RELATIONS}
    AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE') ORDER BY 1 LIMIT 3) w HAVING count(*) > 0
UNION ALL
SELECT 'may create in the schema', string_agg(name, ', ') FROM (SELECT format('%I', n.nspname) AS name
    FROM pg_namespace n WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
    AND n.nspname NOT LIKE 'pg_temp%' AND has_schema_privilege(n.oid, 'CREATE') ORDER BY 1 LIMIT 3) s
    HAVING count(*) > 0
UNION ALL
SELECT 'is a member of', string_agg(name, ', ') FROM unnest($1::text[]) AS name
    WHERE pg_has_role(current_user, name, 'MEMBER') HAVING count(*) > 0
"""


async def privileges(url: URL) -> tuple[str, list[str]]:
    """The role's name and what it may do beyond reading, in words ("owns public.items, public.orders"); empty when it
    only reads. Raises OSError, SQLAlchemyError, asyncpg errors or TimeoutError when it cannot tell."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            async with engine.connect() as connection:
                raw = await connection.get_raw_connection()
                driver: Any = raw.driver_connection
                role = await driver.fetchval("SELECT current_user")
                rows = await driver.fetch(PRIVILEGES_QUERY, list(FILE_ROLES))
                await connection.rollback()
    finally:
        await engine.dispose()
    return role, [what if examples is None else f"{what} {examples}" for what, examples in rows]


async def refusal(url: URL) -> str | None:
    """The one line the server exits with when its role may do more than read, or when that cannot be checked."""
    try:
        role, found = await privileges(url)
    except (TimeoutError, OSError, SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        return f"refusing to start: could not check the database role's privileges ({error}); pass " \
            "--allow-privileged-role to start without the check"  # fmt: skip
    if not found:
        return None
    return (f"refusing to start: the database role {role} {'; '.join(found)}: connect as a read-only role (see "
            "servers/database/README.md, 'A read-only role'), or pass --allow-privileged-role")  # fmt: skip
