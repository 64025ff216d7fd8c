"""The SQL guard: decides, before anything reaches the database, whether a query is one statement that only reads.

On SQLite, pure Python on the query text: a tokenizer that knows the dialect's quotes and comments, then checks on the
tokens. On PostgreSQL, `check` hands the query to `pg_guard`, which decides on PostgreSQL's own parse tree. It is the
first of several layers (the database's read-only transaction or authorizer is the next).
Imports neither the MCP SDK nor `host`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Dialect = Literal["postgresql", "sqlite"]

# Functions that write, reach outside the database, or run SQL given as a string, refused even inside a read-only
# transaction. Matched case-insensitively on every identifier that is called (followed by "("), quoted or not, with or
# without a schema: `NEXTVAL(`, `public.nextval(`, `"pg_catalog"."set_config"(`. One list for both dialects: a
# PostgreSQL name means nothing to SQLite and the other way round. pg_sleep is allowed: statement_timeout bounds it.
DENIED_FUNCTIONS = frozenset(
    {
        # PostgreSQL: settings, sequences, transaction ids
        "set_config",
        "nextval",
        "setval",
        "txid_current",
        "pg_current_xact_id",
        # PostgreSQL: files on the server
        "pg_read_file",
        "pg_read_binary_file",
        "pg_stat_file",
        "loread",
        "lowrite",
        # PostgreSQL: other sessions and the server itself
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_switch_wal",
        "pg_switch_xlog",
        "pg_promote",
        "pg_backup_start",
        "pg_backup_stop",
        "pg_start_backup",
        "pg_stop_backup",
        "pg_drop_replication_slot",
        "pg_log_backend_memory_contexts",
        "pg_import_system_collations",
        "pg_notify",
        # PostgreSQL: the server's configuration files (the views over them are refused by pg_guard)
        "pg_show_all_file_settings",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        # PostgreSQL: functions that run a query given as text
        "ts_stat",
        "ts_rewrite",
        # PostgreSQL extensions that reach outside: pgsql-http
        "http",
        # SQLite: extensions and files
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "fts3_tokenizer",
        # PostgreSQL: index maintenance that writes even in a read-only transaction
        "gin_clean_pending_list",
    }
)
DENIED_FUNCTION_PREFIXES = (
    "dblink",  # dblink, dblink_exec, dblink_connect, ...: other databases
    "lo_",  # large objects: lo_import, lo_export, lo_get, lo_put, lo_from_bytea, lo_unlink, lo_create, ...
    "pg_ls_",  # pg_ls_dir, pg_ls_logdir, pg_ls_waldir, ...: directory listings on the server
    "pg_file_",  # adminpack: pg_file_write, pg_file_rename, pg_file_unlink
    "pg_advisory",  # pg_advisory_lock, pg_advisory_xact_lock, pg_advisory_unlock, ...
    "pg_try_advisory",
    "pg_logical_",  # logical decoding and messages
    "pg_replication_",  # replication origins and slots
    "pg_create_",  # pg_create_restore_point, pg_create_*_replication_slot
    "pg_copy_",  # pg_copy_*_replication_slot
    "pg_wal_replay_",
    "pg_stat_reset",
    "pg_background",
    "query_to_",  # query_to_xml, ...: run a query given as text
    "cursor_to_",
    "table_to_",
    "schema_to_",
    "database_to_",
    "http_",  # pgsql-http
    "brin_",  # brin_summarize_new_values, brin_summarize_range, brin_desummarize_range: write the index
)

# Words refused wherever they stand (outside strings, comments and quoted identifiers): a data-modifying CTE, SELECT
# INTO, EXPLAIN ANALYZE (which runs its statement), COPY in any form. A column really named like this must be quoted.
DENIED_KEYWORDS = frozenset({"insert", "update", "delete", "merge", "into", "copy", "analyze", "analyse"})
LOCKING_AFTER_FOR = frozenset({"update", "share", "no", "key"})  # SELECT ... FOR UPDATE / SHARE / NO KEY / KEY SHARE

READ_KINDS: dict[str, frozenset[str]] = {
    "postgresql": frozenset({"select", "with", "values", "table", "explain", "show"}),
    "sqlite": frozenset({"select", "with", "values", "explain"}),
}
EXPLAINABLE = frozenset({"select", "with", "values", "table"})

TokenKind = Literal["word", "quoted", "string", "number", "param", "punct"]


class GuardError(ValueError):
    """The query was refused; the message says why, in words fit for the caller."""


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # words and quoted identifiers: lower-cased name; strings: the raw literal; others: as written


@dataclass(frozen=True)
class Statement:
    """A query the guard let through: its text (without trailing semicolons) and its kind ("select", "show", ...)."""

    text: str
    kind: str


# Only these are whitespace to PostgreSQL and SQLite; every non-ASCII character (U+00A0, U+2028, U+3000, U+0085, ...)
# is an identifier character to both, so it falls through to the word rule, as it does in the databases' scanners.
WHITESPACE = " \t\n\r\f\v"
_WORD = re.compile(r"[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_$\u0080-\U0010ffff]*")
_NUMBER = re.compile(r"[0-9.][0-9A-Za-z_.]*")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z0-9_\u0080-\U0010ffff]*)?\$")
_PARAMS = {"postgresql": re.compile(r"\$[0-9]+"), "sqlite": re.compile(r"[?:@$][0-9A-Za-z_]*")}


def tokenize(sql: str, dialect: Dialect) -> list[Token]:
    """Split a query into tokens, dropping comments and whitespace; refuse anything unterminated."""
    pg = dialect == "postgresql"
    tokens: list[Token] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in WHITESPACE:
            i += 1
        elif sql.startswith("--", i):
            i = _end_of_line_comment(sql, i, pg)
        elif sql.startswith("/*", i):
            i = _skip_block_comment(sql, i, nested=pg)
        elif c == "'":
            end = _end_of_quoted(sql, i, "'", backslash=False)
            tokens.append(Token("string", sql[i:end]))
            i = end
        elif c == '"' or (not pg and c in "`["):
            close = {"`": "`", "[": "]"}.get(c, '"')
            end = _end_of_quoted(sql, i, close, backslash=False, doubled=close != "]")
            tokens.append(Token("quoted", sql[i + 1 : end - 1].replace(close * 2, close).lower()))
            i = end
        elif pg and c == "$" and (tag := _DOLLAR_TAG.match(sql, i)):
            close_at = sql.find(tag.group(), tag.end())
            if close_at < 0:
                raise GuardError("unterminated dollar-quoted string")
            end = close_at + len(tag.group())
            tokens.append(Token("string", sql[i:end]))
            i = end
        elif word := _WORD.match(sql, i):
            text = word.group()
            i = word.end()
            if pg and text.lower() == "e" and sql.startswith("'", i):  # E'...': backslash escapes
                end = _end_of_quoted(sql, i, "'", backslash=True)
                tokens.append(Token("string", sql[i:end]))
                i = end
            elif pg and text.lower() == "u" and sql.startswith('&"', i):
                raise GuardError('Unicode-escaped identifiers (U&"...") are not supported')
            else:
                tokens.append(Token("word", text.lower()))
        elif c.isdigit() or (c == "." and sql[i + 1 : i + 2].isdigit()):
            number = _NUMBER.match(sql, i)
            assert number is not None
            tokens.append(Token("number", number.group()))
            i = number.end()
        elif (param := _PARAMS[dialect].match(sql, i)) and not sql.startswith("::", i):
            tokens.append(Token("param", param.group()))
            i = param.end()
        else:
            tokens.append(Token("punct", c))
            i += 1
    return tokens


def _end_of_line_comment(sql: str, start: int, pg: bool) -> int:
    """Index just past a `--` comment: PostgreSQL ends it at a newline or a carriage return, SQLite at a newline."""
    ends = [end for end in (sql.find("\n", start), sql.find("\r", start) if pg else -1) if end >= 0]
    return min(ends) + 1 if ends else len(sql)


def _skip_block_comment(sql: str, start: int, nested: bool) -> int:
    depth, i = 0, start
    while i < len(sql):
        if sql.startswith("/*", i) and (nested or depth == 0):
            depth += 1
            i += 2
        elif sql.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    raise GuardError("unterminated /* comment")


def _end_of_quoted(sql: str, start: int, close: str, backslash: bool, doubled: bool = True) -> int:
    """Index just past the closing quote of the literal or identifier opening at `start`."""
    i = start + 1
    while i < len(sql):
        c = sql[i]
        if backslash and c == "\\":
            i += 2
        elif c == close:
            if doubled and sql.startswith(close, i + 1):
                i += 2
            else:
                return i + 1
        else:
            i += 1
    raise GuardError("unterminated quoted string or identifier")


def check(sql: str, dialect: Dialect, max_length: int) -> Statement:
    """Return the statement if it is exactly one statement that only reads; raise GuardError otherwise."""
    if not sql.strip(WHITESPACE):
        raise GuardError("the query is empty")
    if len(sql) > max_length:
        raise GuardError(f"the query is {len(sql)} characters long; the limit is {max_length}")
    if "\x00" in sql:
        raise GuardError("the query contains a NUL character")
    if dialect == "postgresql":
        from servers.database.pg_guard import check_postgresql  # here: pg_guard imports this module

        return check_postgresql(sql)
    tokens = tokenize(sql, dialect)
    if not tokens or all(t == Token("punct", ";") for t in tokens):
        raise GuardError("the query has no statement, only comments or semicolons")
    if any(token.kind == "param" for token in tokens):
        raise GuardError("query parameters ($1, ?, :name) are not supported: write the values into the query")
    body = _one_statement(tokens)
    kind = _kind(body, READ_KINDS[dialect])
    _check_words(body)
    return Statement(text=_strip_trailing_semicolons(sql), kind=kind)


def _one_statement(tokens: list[Token]) -> list[Token]:
    semicolons = [i for i, t in enumerate(tokens) if t == Token("punct", ";")]
    if not semicolons:
        return tokens
    first = semicolons[0]
    if any(t != Token("punct", ";") for t in tokens[first:]):
        raise GuardError("only one statement is allowed (found a semicolon followed by more SQL)")
    return tokens[:first]


def _kind(tokens: list[Token], allowed: frozenset[str]) -> str:
    """The statement's kind, from its leading keyword and, for WITH and EXPLAIN, from the statement they carry."""
    start = 0
    while start < len(tokens) and tokens[start] == Token("punct", "("):
        start += 1
    if start >= len(tokens) or tokens[start].kind != "word":
        raise GuardError("the query does not start with a statement keyword")
    kind = tokens[start].text
    if kind not in allowed:
        readable = ", ".join(sorted(k.upper() for k in allowed))
        raise GuardError(f"{kind.upper()} statements are not allowed: this server runs only {readable}")
    if kind == "with":
        main = _main_statement_after_with(tokens[start + 1 :])
        if main not in EXPLAINABLE:
            raise GuardError(f"WITH ... {main.upper()} is not allowed: only WITH ... SELECT reads")
    elif kind == "explain":
        inner = _explained(tokens[start + 1 :])
        _kind(inner, EXPLAINABLE)
    return kind


def _main_statement_after_with(tokens: list[Token]) -> str:
    depth = 0
    for token in tokens:
        if token.kind == "punct" and token.text in "()":
            depth += 1 if token.text == "(" else -1
        elif depth == 0 and token.kind == "word" and token.text in EXPLAINABLE | DENIED_KEYWORDS:
            return token.text
    raise GuardError("WITH without a statement after its common table expressions")


def _explained(tokens: list[Token]) -> list[Token]:
    """The statement an EXPLAIN explains, past its options: `(FORMAT JSON)`, `VERBOSE`, SQLite's `QUERY PLAN`."""
    i = 0
    if tokens and tokens[0] == Token("punct", "("):
        depth = 0
        while i < len(tokens):
            token = tokens[i]
            depth += {"(": 1, ")": -1}.get(token.text, 0) if token.kind == "punct" else 0
            if token.kind in ("word", "quoted") and token.text in DENIED_KEYWORDS:  # EXPLAIN ("analyze") too
                raise GuardError(f"{token.text.upper()} is not allowed in a read-only query")
            i += 1
            if depth == 0:
                break
    while i < len(tokens) and tokens[i].kind == "word" and tokens[i].text in ("verbose", "query", "plan"):
        i += 1
    return tokens[i:]


def _check_words(tokens: list[Token]) -> None:
    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token.kind == "word" and token.text in DENIED_KEYWORDS:
            raise GuardError(f"{token.text.upper()} is not allowed in a read-only query")
        locking = following is not None and following.kind == "word" and following.text in LOCKING_AFTER_FOR
        if token.text == "for" and token.kind == "word" and locking:
            raise GuardError("locking clauses (FOR UPDATE / FOR SHARE) are not allowed in a read-only query")
        if token.kind in ("word", "quoted") and following == Token("punct", "(") and is_denied_function(token.text):
            raise GuardError(f"the function {token.text}() is not allowed: it writes or reaches outside the database")


def is_denied_function(name: str) -> bool:
    """Whether a function name (any case, no schema) is on the deny-list."""
    name = name.lower()
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_FUNCTION_PREFIXES)


def _strip_trailing_semicolons(sql: str) -> str:
    text = sql.rstrip(WHITESPACE)
    while text.endswith(";"):
        text = text[:-1].rstrip(WHITESPACE)
    return text
