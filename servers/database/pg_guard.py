"""The SQL guard on PostgreSQL: decides on PostgreSQL's own parse tree (pglast, which wraps libpg_query, the server's
parser as a library) whether a query is one statement that only reads, and whether it calls a denied function or
reads a denied relation anywhere in it (CTEs, subqueries, LATERAL, casts, function arguments: every node is walked).

The query's first keyword only names its kind ("select", "with", ...); the decision is the tree's. Imports neither the
MCP SDK nor `host`.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from pglast import parser

from servers.database.guard import GuardError, Statement, is_denied_function

# Views that show the server's configuration files to a superuser (pg_file_settings: postgresql.conf line by line,
# pg_hba_file_rules, pg_ident_file_mappings), refused by name wherever a relation is named. Their set-returning
# functions are on guard.DENIED_FUNCTIONS.
DENIED_RELATIONS = frozenset({"pg_file_settings", "pg_hba_file_rules", "pg_ident_file_mappings"})

READ_KINDS = frozenset({"select", "with", "values", "table", "explain", "show"})
SELECT_KINDS = frozenset({"select", "with", "values", "table"})
WRITES = {"InsertStmt": "INSERT", "UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}
ANALYZE_OPTIONS = frozenset({"analyze", "analyse"})
SKIPPED_TOKENS = frozenset({"ASCII_40", "ASCII_59", "SQL_COMMENT", "C_COMMENT"})  # ( ; -- /*


def check_postgresql(sql: str) -> Statement:
    """The statement if `sql` is exactly one statement that only reads; GuardError saying why otherwise. The caller
    has already refused empty, overlong and NUL-holding queries."""
    try:
        tree = json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as error:
        raise GuardError(f"the query is not valid SQL: {error.args[0]}") from None
    except RecursionError:
        raise GuardError("the query is nested too deeply") from None
    statements = tree.get("stmts", [])
    if not statements:
        raise GuardError("the query has no statement, only comments or semicolons")
    if len(statements) > 1:
        raise GuardError("only one statement is allowed (found a semicolon followed by more SQL)")
    [raw] = statements
    kind = _first_keyword(sql)
    node_type, node = next(iter(raw["stmt"].items()))
    _check_kind(kind, node_type, node)
    _check_nodes(raw["stmt"])
    return Statement(text=_statement_text(sql, raw), kind=kind)


def _first_keyword(sql: str) -> str:
    """The statement's first keyword, past comments and opening parentheses, lower-cased ("select", "explain", ...)."""
    for token in parser.scan(sql):
        if token.name not in SKIPPED_TOKENS:
            word: str = sql.encode()[token.start : token.end + 1].decode().lower()
            return word if token.kind != "NO_KEYWORD" else ""
    return ""


def _check_kind(kind: str, node_type: str, node: dict[str, Any]) -> None:
    allowed = ", ".join(sorted(k.upper() for k in READ_KINDS))
    if kind not in READ_KINDS:
        if not kind:
            raise GuardError("the query does not start with a statement keyword")
        raise GuardError(f"{kind.upper()} statements are not allowed: this server runs only {allowed}")
    if kind == "explain" and node_type == "ExplainStmt":
        for option in node.get("options", []):
            name = option.get("DefElem", {}).get("defname", "").lower()
            if name in ANALYZE_OPTIONS:
                raise GuardError(f"EXPLAIN {name.upper()} is not allowed: it runs the statement")
        node_type, _ = next(iter(node["query"].items()))
        if node_type != "SelectStmt":
            raise GuardError(f"EXPLAIN {_described(node_type)} is not allowed: only reads may be explained")
        return
    expected = {"explain": "ExplainStmt", "show": "VariableShowStmt"}.get(kind, "SelectStmt")
    if node_type != expected:
        if kind == "with":
            raise GuardError(f"WITH ... {_described(node_type)} is not allowed: only WITH ... SELECT reads")
        raise GuardError(f"{_described(node_type)} statements are not allowed: this server runs only {allowed}")


def _described(node_type: str) -> str:
    return WRITES.get(node_type) or node_type.removesuffix("Stmt").upper()


def _check_nodes(root: Any) -> None:
    """Walk every node of the tree in the query's order (iteratively: a deep tree must not exhaust Python's stack).
    Nodes are told apart by their fields as well as their type names: libpg_query's JSON leaves out the type name
    where a field can only hold one type (a UNION's arms, SELECT ... INTO's target)."""
    pending = deque([root])
    while pending:
        item = pending.popleft()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, dict):
            _check_fields(item)
            for key, value in item.items():
                if isinstance(value, dict):
                    _check_node_type(key)
                if isinstance(value, dict | list):
                    pending.append(value)


def _check_fields(node: dict[str, Any]) -> None:
    if "funcname" in node:  # a function call (FuncCall)
        name = _last_name(node["funcname"]).lower()
        if is_denied_function(name):
            raise GuardError(f"the function {name}() is not allowed: it writes or reaches outside the database")
    if str(node.get("relname", "")).lower() in DENIED_RELATIONS:  # a relation named in FROM, TABLE, JOIN (RangeVar)
        raise GuardError(f"the view {node['relname']} is not allowed: it shows the server's configuration files")
    if "intoClause" in node:
        raise GuardError("SELECT ... INTO is not allowed in a read-only query: it creates a table")
    if "lockingClause" in node:
        raise GuardError("locking clauses (FOR UPDATE / FOR SHARE) are not allowed in a read-only query")


def _check_node_type(node_type: str) -> None:
    if node_type == "ParamRef":
        raise GuardError("query parameters ($1) are not supported: write the values into the query")
    if node_type in WRITES:
        raise GuardError(f"{WRITES[node_type]} is not allowed in a read-only query")
    if node_type.endswith("Stmt") and node_type not in ("SelectStmt", "ExplainStmt", "VariableShowStmt"):
        raise GuardError(f"{_described(node_type)} is not allowed in a read-only query")


def _last_name(parts: list[dict[str, Any]]) -> str:
    """The function's own name from a possibly schema-qualified name list: `pg_catalog.nextval` gives "nextval"."""
    names = [part["String"]["sval"] for part in parts if "String" in part]
    return names[-1] if names else ""


def _statement_text(sql: str, raw: dict[str, Any]) -> str:
    """The statement alone: without leading comments and trailing semicolons (libpg_query counts in UTF-8 bytes)."""
    data = sql.encode()
    start = raw.get("stmt_location", 0)
    length = raw.get("stmt_len", 0) or len(data) - start
    return data[start : start + length].decode().strip(" \t\n\r\f\v")
