"""The database server's structured results (pydantic models, so tools send structuredContent). Never imports `host`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class QueryResult(BaseModel):
    """Rows of one read-only query, at most the row limit of them."""

    columns: list[str] = Field(description="column names, in order")
    rows: list[list[Any]] = Field(description="one list of JSON values per row, in column order")
    row_count: int = Field(description="number of rows returned here")
    truncated: bool = Field(description="true when the query had more rows than the row limit or the byte limit holds")
    note: str | None = Field(default=None, description="why the result was truncated, when it was")


class TableInfo(BaseModel):
    schema_name: str = Field(alias="schema", description="schema (PostgreSQL) or database (SQLite: main)")
    name: str
    type: str = Field(description='"table", "view" or "materialized view"')

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class TableList(BaseModel):
    tables: list[TableInfo]


class ColumnInfo(BaseModel):
    name: str
    type: str
    nullable: bool
    default: str | None = None
    primary_key: bool = False


class ForeignKey(BaseModel):
    columns: list[str]
    references_schema: str | None = None
    references_table: str
    references_columns: list[str]


class TableSchema(BaseModel):
    schema_name: str = Field(alias="schema")
    name: str
    type: str
    columns: list[ColumnInfo]
    primary_key: list[str]
    foreign_keys: list[ForeignKey]

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class SchemaResult(BaseModel):
    tables: list[TableSchema]
