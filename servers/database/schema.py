"""Tables and their schema (columns, types, nullability, primary and foreign keys) through SQLAlchemy's inspector, on
a connection that is as read-only as the ones queries use. Never imports `host`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Inspector
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from servers.database.connection import dialect_of, sqlite_policy
from servers.database.execute import QueryError
from servers.database.results import ColumnInfo, ForeignKey, TableInfo, TableSchema


async def list_tables(engine: AsyncEngine) -> list[TableInfo]:
    tables: list[TableInfo] = await _inspect(engine, _tables)
    return tables


async def describe(engine: AsyncEngine, table_name: str | None) -> list[TableSchema]:
    """The schema of one table ("name" or "schema.name") or, without a name, of every table and view."""
    tables = await list_tables(engine)
    if table_name is not None:
        tables = _find(tables, table_name)
    described: list[TableSchema] = await _inspect(engine, lambda inspector: _describe(inspector, tables))
    return described


async def _inspect(engine: AsyncEngine, function: Any) -> Any:
    async with engine.connect() as connection:
        if dialect_of(engine) == "sqlite":
            await sqlite_policy(connection)  # the inspector's queries pass the same authorizer (schema pragmas only)
        try:
            return await connection.run_sync(lambda sync: function(inspect(sync)))
        except SQLAlchemyError as error:
            raise QueryError(f"reading the schema failed: {error}") from None


def _schemas(inspector: Inspector) -> list[str | None]:
    if inspector.bind.dialect.name != "postgresql":
        return [None]
    names = inspector.get_schema_names()
    return [name for name in names if name != "information_schema" and not name.startswith("pg_")]


def _tables(inspector: Inspector) -> list[TableInfo]:
    found: list[TableInfo] = []
    for schema in _schemas(inspector):
        shown = schema or inspector.default_schema_name or "main"
        names = [
            (inspector.get_table_names(schema), "table"),
            (inspector.get_view_names(schema), "view"),
        ]
        if inspector.bind.dialect.name == "postgresql":
            names.append((inspector.get_materialized_view_names(schema), "materialized view"))
        found += [TableInfo(schema=shown, name=name, type=kind) for group, kind in names for name in sorted(group)]
    return found


def _find(tables: list[TableInfo], wanted: str) -> list[TableInfo]:
    for exact in (True, False):
        for table in tables:
            for candidate in (table.name, f"{table.schema_name}.{table.name}"):
                if candidate == wanted or (not exact and candidate.lower() == wanted.lower()):
                    return [table]
    known = ", ".join(table.name for table in tables[:30]) or "none"
    raise QueryError(f"no table or view named {wanted!r}; tables: {known}")


def _describe(inspector: Inspector, tables: list[TableInfo]) -> list[TableSchema]:
    bind: Connection = inspector.bind  # type: ignore[assignment]
    default = inspector.default_schema_name
    described: list[TableSchema] = []
    for table in tables:
        schema = None if table.schema_name in (default, "main") else table.schema_name
        primary = (
            inspector.get_pk_constraint(table.name, schema).get("constrained_columns") or []
            if table.type == "table"
            else []
        )
        columns = [
            ColumnInfo(
                name=column["name"],
                type=_type_name(column["type"], bind),
                nullable=bool(column.get("nullable", True)),
                default=None if column.get("default") is None else str(column.get("default")),
                primary_key=column["name"] in primary,
            )
            for column in inspector.get_columns(table.name, schema)
        ]
        foreign = inspector.get_foreign_keys(table.name, schema) if table.type == "table" else []
        keys = [
            ForeignKey(
                columns=list(key["constrained_columns"]),
                references_schema=key.get("referred_schema"),
                references_table=key["referred_table"],
                references_columns=list(key["referred_columns"]),
            )
            for key in foreign
        ]
        described.append(
            TableSchema(
                schema=table.schema_name,
                name=table.name,
                type=table.type,
                columns=columns,
                primary_key=list(primary),
                foreign_keys=keys,
            )
        )
    return described


def _type_name(column_type: Any, bind: Connection) -> str:
    try:
        return str(column_type.compile(dialect=bind.dialect))
    except Exception:  # a type SQLAlchemy cannot render (NullType, some extension types)
        return str(column_type.__class__.__name__)
