"""The database server's SQL guard and SQLite authorizer policy, as pure unit tests (no database, no MCP)."""

import sqlite3
import time

import pytest

from servers.database.guard import Dialect, GuardError, check, is_denied_function, tokenize
from servers.database.sqlite_policy import SqlitePolicy

LIMIT = 20_000

ALLOWED_BOTH = [
    ("SELECT 1", "select"),
    ("select 1", "select"),
    ("SELECT 1;", "select"),
    ("SELECT 1;;  ", "select"),
    ("SELECT 1; -- done", "select"),
    ("-- comment\nselect 1", "select"),
    ("/* c */ SELECT 1", "select"),
    ("(SELECT 1) UNION (SELECT 2)", "select"),
    ("WITH x AS (SELECT 1 AS a) SELECT a FROM x", "with"),
    ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT n FROM c", "with"),
    ("VALUES (1, 'a')", "values"),
    ("EXPLAIN SELECT * FROM t", "explain"),
    ("SELECT 'DROP TABLE x; --'", "select"),
    ("SELECT 'it''s; DELETE FROM t'", "select"),
    ('SELECT "delete" FROM t', "select"),  # a quoted identifier named like a keyword
    ("SELECT 'nextval(1)', \"update\" FROM t", "select"),
    ("SELECT nextval FROM t", "select"),  # a column, not a call
    ("SELECT substring(name FROM 1 FOR 3) FROM t", "select"),
    ("SELECT 1 -- ; DROP TABLE t", "select"),
]
ALLOWED_POSTGRESQL = [
    ("TABLE t", "table"),
    ("SHOW statement_timeout", "show"),
    ("EXPLAIN (FORMAT JSON) SELECT 1", "explain"),
    ("EXPLAIN VERBOSE SELECT 1", "explain"),
    ("SELECT $$ ; DROP TABLE t; $$", "select"),
    ("SELECT $tag$ it's $$ ; $tag$", "select"),
    ("SELECT E'\\'; DELETE FROM t; --'", "select"),  # one escape string
    ("SELECT 1 /* outer /* inner */ ; DELETE FROM t; */", "select"),  # nested comments on PostgreSQL
    ("SELECT x::text, current_setting('statement_timeout') FROM t", "select"),
    ("SELECT pg_sleep(0.1)", "select"),
    # words that only writes use are names in a read: the parse tree, not the words, decides
    ("SELECT 1 AS update", "select"),
    ("SELECT 1 AS insert, 2 AS into, 3 AS copy, 4 AS analyze_me FROM t AS delete", "select"),
    ("SELECT 1 FROM (SELECT 1) s WHERE 1 = 1 AND (copy = 1)", "select"),
    ("SELECT update FROM t WHERE merge > 0", "select"),
    ('SELECT U&"\\0061" FROM t', "select"),  # a Unicode-escaped identifier is a name like any other
    ("(((SELECT 1)))", "select"),
    (
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM t) SEARCH DEPTH FIRST BY n SET o SELECT * FROM t",
        "with",
    ),
]
ALLOWED_SQLITE = [
    ("EXPLAIN QUERY PLAN SELECT * FROM t", "explain"),
    ("SELECT [order], `group` FROM t", "select"),
]


@pytest.mark.parametrize(("sql", "kind"), ALLOWED_BOTH + ALLOWED_POSTGRESQL)
def test_postgresql_allows(sql: str, kind: str) -> None:
    assert check(sql, "postgresql", LIMIT).kind == kind


@pytest.mark.parametrize(("sql", "kind"), ALLOWED_BOTH + ALLOWED_SQLITE)
def test_sqlite_allows(sql: str, kind: str) -> None:
    assert check(sql, "sqlite", LIMIT).kind == kind


REFUSED_BOTH = {
    "": "empty",
    "   \n ": "empty",
    "-- only a comment": "no statement",
    ";": "no statement",
    "DROP TABLE t": "DROP statements",
    "COMMIT; DROP TABLE t": "only one statement",
    "SELECT 1; DROP TABLE t": "only one statement",
    "; DROP TABLE t": "only one statement",
    "SELECT 1 /* ; */ ; DELETE FROM t": "only one statement",
    "SELECT '--'; DELETE FROM t": "only one statement",
    "SELECT 1 -- c\n; DELETE FROM t": "only one statement",
    "SELECT 'x' /* never closed": "unterminated",
    "SELECT 'never closed": "unterminated",
    'SELECT "never closed': "unterminated",
    "DELETE FROM t": "DELETE statements",
    "delete from t": "DELETE statements",
    "UPDATE t SET a = 1": "UPDATE statements",
    "INSERT INTO t VALUES (1)": "INSERT statements",
    "REPLACE INTO t VALUES (1)": "REPLACE statements",
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x": "DELETE is not allowed",
    "WITH x AS (SELECT 1) DELETE FROM t": "WITH ... DELETE",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x": "INSERT is not allowed",
    "SELECT * INTO newtable FROM t": "INTO is not allowed",
    "EXPLAIN ANALYZE DELETE FROM t": "ANALYZE statements",
    "EXPLAIN ANALYZE SELECT 1": "ANALYZE statements",
    "EXPLAIN DELETE FROM t": "DELETE statements",
    "EXPLAIN (ANALYZE) SELECT 1": "ANALYZE is not allowed",
    "CREATE TABLE x (a int)": "CREATE statements",
    "CREATE TEMP TABLE x AS SELECT 1": "CREATE statements",
    "BEGIN": "BEGIN statements",
    "SAVEPOINT s": "SAVEPOINT statements",
    "ROLLBACK": "ROLLBACK statements",
    "SELECT load_extension('x')": "load_extension",
    "SELECT LOAD_EXTENSION('x')": "load_extension",
    "SELECT 1 FROM t WHERE 1 = 1 OR writefile('/tmp/x', 'y')": "writefile",
    "'SELECT 1'": "does not start with a statement keyword",
}
REFUSED_POSTGRESQL = {
    "COPY t TO '/tmp/x'": "COPY statements",
    "COPY t TO PROGRAM 'id'": "COPY statements",
    "SELECT set_config('default_transaction_read_only', 'off', false)": "set_config",
    "SELECT \"pg_catalog\".\"set_config\"('a', 'b', false)": "set_config",
    "SET statement_timeout = 0": "SET statements",
    "RESET ALL": "RESET statements",
    "SELECT nextval('s')": "nextval",
    "SELECT NEXTVAL('s')": "nextval",
    "SELECT \"NEXTVAL\"('s')": "nextval",
    "SELECT pg_catalog.nextval('s')": "nextval",
    "SELECT public . nextval /* c */ ('s')": "nextval",
    "SELECT setval('s', 1)": "setval",
    "SELECT pg_advisory_lock(1)": "pg_advisory_lock",
    "SELECT Pg_Try_Advisory_Lock(1)": "pg_try_advisory_lock",
    "SELECT pg_advisory_xact_lock(1)": "pg_advisory_xact_lock",
    "SELECT lo_import('/etc/passwd')": "lo_import",
    "SELECT lo_from_bytea(0, 'x')": "lo_from_bytea",
    "SELECT pg_read_file('/etc/passwd')": "pg_read_file",
    "SELECT pg_read_binary_file('/etc/passwd')": "pg_read_binary_file",
    "SELECT pg_ls_dir('.')": "pg_ls_dir",
    "SELECT * FROM dblink('dbname=x', 'DELETE FROM t') AS r(a text)": "dblink",
    "SELECT dblink_exec('dbname=x', 'DROP TABLE t')": "dblink_exec",
    "SELECT pg_terminate_backend(1)": "pg_terminate_backend",
    "SELECT query_to_xml('DELETE FROM t', true, true, '')": "query_to_xml",
    "SELECT txid_current()": "txid_current",
    "SELECT pg_notify('c', 'x')": "pg_notify",
    "SELECT * FROM t FOR UPDATE": "locking",
    "SELECT * FROM t FOR NO KEY UPDATE": "locking",
    "SELECT * FROM t FOR SHARE": "locking",
    "SELECT * FROM t FOR KEY SHARE": "locking",
    "DO $$ BEGIN DELETE FROM t; END $$": "DO statements",
    "CALL p()": "CALL statements",
    "PREPARE p AS SELECT 1": "PREPARE statements",
    "EXECUTE p": "EXECUTE statements",
    "DECLARE c CURSOR FOR SELECT 1": "DECLARE statements",
    "LOCK TABLE t": "LOCK statements",
    "LISTEN c": "LISTEN statements",
    "NOTIFY c": "NOTIFY statements",
    "TRUNCATE t": "TRUNCATE statements",
    "SELECT $$ never closed": "unterminated dollar",
    "SELECT '\\'; DELETE FROM t; --'": "only one statement",  # standard strings: the backslash is a character
    "SELECT 1 /* /* */ ; DELETE FROM t": "unterminated",  # nested: the outer comment never closes
    "SELECT $1": "parameters",
    "EXPLAIN EXPLAIN SELECT 1": "EXPLAIN statements",
    # PostgreSQL ends a -- comment at a carriage return as well as at a newline
    "SELECT 1 --\r, pg_advisory_lock(42)": "pg_advisory_lock",
    "SELECT 1 AS x --\r, pg_read_file('/etc/passwd', 0, 200) AS leak": "pg_read_file",
    # non-ASCII spaces are identifier characters to PostgreSQL: "\u00a0$a$" is a name, not a dollar-quote
    "SELECT 1 AS \u00a0$a$, pg_advisory_lock(7), pg_read_file('/etc/hostname') AS f, 1 AS x$a$": "pg_advisory_lock",
    "SELECT 1 AS \u2028$a$, pg_advisory_lock(7), 1 AS x$a$": "pg_advisory_lock",
    "SELECT 1 AS \u3000$a$, pg_advisory_lock(7), 1 AS x$a$": "pg_advisory_lock",
    "SELECT 1 AS \x85$a$, pg_advisory_lock(7), 1 AS x$a$": "pg_advisory_lock",
    # more functions that write, and a quoted EXPLAIN option
    "SELECT brin_summarize_new_values('i')": "brin_summarize_new_values",
    "SELECT brin_summarize_range('i', 0)": "brin_summarize_range",
    "SELECT brin_desummarize_range('i', 0)": "brin_desummarize_range",
    "SELECT gin_clean_pending_list('i')": "gin_clean_pending_list",
    'EXPLAIN ("analyze") SELECT 1': "ANALYZE is not allowed",
    'EXPLAIN ("ANALYSE" true, costs off) SELECT 1': "ANALYSE is not allowed",
}
# The same hostile statements, where PostgreSQL's parse tree refuses them for another (still right) reason.
POSTGRESQL_REASONS = {
    "; DROP TABLE t": "DROP statements",
    "REPLACE INTO t VALUES (1)": "not valid SQL",
    "EXPLAIN ANALYZE DELETE FROM t": "EXPLAIN ANALYZE is not allowed",
    "EXPLAIN ANALYZE SELECT 1": "EXPLAIN ANALYZE is not allowed",
    "EXPLAIN DELETE FROM t": "EXPLAIN DELETE is not allowed",
    "EXPLAIN (ANALYZE) SELECT 1": "EXPLAIN ANALYZE is not allowed",
    "'SELECT 1'": "not valid SQL",
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x": "DELETE is not allowed",
    "SELECT * INTO newtable FROM t": "SELECT ... INTO is not allowed",
    "SELECT U&\"\\006Eextval\"('s')": "nextval",
    "EXPLAIN EXPLAIN SELECT 1": "not valid SQL",
    "SHOW": "not valid SQL",
    "SELECT $$ never closed": "unterminated dollar",
    'EXPLAIN ("analyze") SELECT 1': "EXPLAIN ANALYZE is not allowed",
    'EXPLAIN ("ANALYSE" true, costs off) SELECT 1': "EXPLAIN ANALYSE is not allowed",
}
# Only the parse tree sees these: calls and relations anywhere in the statement, and the configuration views.
REFUSED_BY_THE_TREE = {
    "WITH a AS (SELECT pg_read_file('/etc/passwd') AS f) SELECT * FROM a": "pg_read_file",
    "SELECT * FROM (SELECT * FROM (SELECT lo_import('/etc/passwd')) x) y": "lo_import",
    "SELECT * FROM t, LATERAL (SELECT pg_read_binary_file(t.name)) f": "pg_read_binary_file",
    "SELECT * FROM ROWS FROM (pg_ls_dir('.')) AS d": "pg_ls_dir",
    "SELECT CAST(pg_read_file('/etc/passwd') AS int)": "pg_read_file",
    "SELECT pg_read_file('/etc/passwd')::text": "pg_read_file",
    "SELECT (SELECT array_agg(x) FROM unnest(ARRAY[lo_export(1, '/tmp/x')]) x)": "lo_export",
    "SELECT 1 WHERE EXISTS (SELECT pg_catalog.set_config('a', 'b', false))": "set_config",
    "SELECT count(*) FILTER (WHERE nextval('s') > 0) FROM t": "nextval",
    "SELECT sum(x) OVER (ORDER BY nextval('s')) FROM t": "nextval",
    "VALUES (dblink('x', 'y'))": "dblink",
    "TABLE pg_file_settings": "pg_file_settings",
    "SELECT * FROM pg_catalog.pg_file_settings": "pg_file_settings",
    "SELECT * FROM pg_hba_file_rules": "pg_hba_file_rules",
    'SELECT * FROM "pg_ident_file_mappings"': "pg_ident_file_mappings",
    "SELECT * FROM (SELECT * FROM pg_file_settings) s": "pg_file_settings",
    "SELECT * FROM pg_show_all_file_settings()": "pg_show_all_file_settings",
    "SELECT * FROM pg_hba_file_rules()": "pg_hba_file_rules",
    "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT 1": "UPDATE is not allowed",
    "WITH x AS (SELECT 1), y AS (MERGE INTO t USING x ON true WHEN MATCHED THEN DELETE) SELECT 1": "not",
    "SELECT * FROM (SELECT * FROM t FOR UPDATE) s": "locking",
    "SELECT 1 UNION SELECT 2 INTO TEMP x": "INTO",
    "SELECT 1 UNION (SELECT 2 FROM t FOR SHARE)": "locking",
    "SELECT 1 UNION ALL SELECT * FROM pg_file_settings": "pg_file_settings",
    "EXPLAIN CREATE TABLE x AS SELECT 1": "EXPLAIN CREATETABLEAS is not allowed",
    "SELECT 1 WHERE $1 = 1": "parameters",
    "COPY (SELECT 1) TO PROGRAM 'id'": "COPY statements",
    "SELECT " + "ARRAY[" * 2500 + "1" + "]" * 2500: "nested too deeply",
}
REFUSED_SQLITE = {
    "ATTACH DATABASE '/tmp/x.db' AS x": "ATTACH statements",
    "DETACH DATABASE x": "DETACH statements",
    "VACUUM INTO '/tmp/x.db'": "VACUUM statements",
    "PRAGMA writable_schema = 1": "PRAGMA statements",
    "PRAGMA journal_mode = DELETE": "PRAGMA statements",
    "SHOW tables": "SHOW statements",
    "SELECT 1 /* /* */ ; DELETE FROM t; */": "only one statement",  # SQLite comments do not nest
    "SELECT ?": "parameters",
    "SELECT :name": "parameters",
    "SELECT fts3_tokenizer('x')": "fts3_tokenizer",
}


@pytest.mark.parametrize(
    ("sql", "reason"), {**REFUSED_BOTH, **REFUSED_POSTGRESQL, **POSTGRESQL_REASONS, **REFUSED_BY_THE_TREE}.items()
)
def test_postgresql_refuses(sql: str, reason: str) -> None:
    with pytest.raises(GuardError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        check(sql, "postgresql", LIMIT)


@pytest.mark.parametrize(("sql", "reason"), [*REFUSED_BOTH.items(), *REFUSED_SQLITE.items()])
def test_sqlite_refuses(sql: str, reason: str) -> None:
    with pytest.raises(GuardError, match=reason.replace("(", r"\(").replace(".", r"\.")):
        check(sql, "sqlite", LIMIT)


def test_length_limit() -> None:
    query = "SELECT '" + "x" * 100 + "'"
    assert check(query, "sqlite", len(query)).kind == "select"
    with pytest.raises(GuardError, match="limit is 50"):
        check(query, "sqlite", 50)


def test_nul_character_is_refused() -> None:
    with pytest.raises(GuardError, match="NUL"):
        check("SELECT 1\x00; DROP TABLE t", "postgresql", LIMIT)


def test_statement_text_drops_only_trailing_semicolons() -> None:
    assert check("SELECT ';' ;  ;\n", "postgresql", LIMIT).text == "SELECT ';'"


def test_tokenizer_keeps_strings_and_drops_comments() -> None:
    tokens = tokenize("SELECT 'a;b' /* x */, \"Q\" -- y\n FROM t", "postgresql")
    assert [(t.kind, t.text) for t in tokens] == [
        ("word", "select"),
        ("string", "'a;b'"),
        ("punct", ","),
        ("quoted", "q"),
        ("word", "from"),
        ("word", "t"),
    ]


def test_comments_and_spaces_end_where_the_database_ends_them() -> None:
    def words(sql: str, dialect: Dialect) -> list[str]:
        return [token.text for token in tokenize(sql, dialect)]

    assert words("SELECT 1 --\r, f(x)", "postgresql") == ["select", "1", ",", "f", "(", "x", ")"]
    assert words("SELECT 1 --\r, f(x)", "sqlite") == ["select", "1"]  # SQLite ends a comment at a newline only
    assert words("SELECT 1 --\r\n, f(x)", "sqlite") == ["select", "1", ",", "f", "(", "x", ")"]
    for space in "\u00a0\u2028\u3000\x85":  # identifier characters, as in PostgreSQL and SQLite
        assert words(f"SELECT a{space}b $x$ {space}$x$", "postgresql") == [
            "select",
            f"a{space}b",
            "$x$ " + f"{space}$x$",
        ]
        assert words(f"SELECT {space}$a$ x", "postgresql") == ["select", f"{space}$a$", "x"]
    assert words("SELECT\t1\f,\v2\r\n", "postgresql") == ["select", "1", ",", "2"]
    assert check("SELECT 1 AS x\u00a0;", "postgresql", LIMIT).text == "SELECT 1 AS x\u00a0"


@pytest.mark.parametrize(
    ("name", "denied"),
    [
        ("nextval", True),
        ("NEXTVAL", True),
        ("lo_export", True),
        ("dblink_connect", True),
        ("pg_advisory_unlock_all", True),
        ("pg_sleep", False),
        ("current_setting", False),
        ("currval", False),
        ("count", False),
        ("lower", False),
    ],
)
def test_deny_list(name: str, denied: bool) -> None:
    assert is_denied_function(name) is denied


def test_sqlite_policy_allows_reads_only() -> None:
    policy = SqlitePolicy()
    assert policy.authorize(sqlite3.SQLITE_SELECT, None, None, None, None) == sqlite3.SQLITE_OK
    assert policy.authorize(sqlite3.SQLITE_READ, "t", "a", "main", None) == sqlite3.SQLITE_OK
    assert policy.authorize(sqlite3.SQLITE_FUNCTION, None, "lower", None, None) == sqlite3.SQLITE_OK
    assert policy.authorize(sqlite3.SQLITE_PRAGMA, "table_info", "t", "main", None) == sqlite3.SQLITE_OK
    refused = [
        (sqlite3.SQLITE_FUNCTION, None, "load_extension"),
        (sqlite3.SQLITE_PRAGMA, "writable_schema", "1"),
        (sqlite3.SQLITE_PRAGMA, "journal_mode", "DELETE"),
        (sqlite3.SQLITE_ATTACH, "/tmp/x.db", None),
        (sqlite3.SQLITE_INSERT, "t", None),
        (sqlite3.SQLITE_TRANSACTION, "BEGIN", None),
        (sqlite3.SQLITE_CREATE_TABLE, "x", None),
    ]
    for action, first, second in refused:
        assert policy.authorize(action, first, second, "main", None) == sqlite3.SQLITE_DENY
    assert policy.denied == "CREATE_TABLE x"


def test_sqlite_policy_deadline() -> None:
    policy = SqlitePolicy()
    assert policy.progress() == 0
    policy.deadline = time.monotonic() - 1
    assert policy.progress() == 1
    policy.deadline = time.monotonic() + 60
    assert policy.progress() == 0
