"""mcp_servers.json: both dialects, transport inference, ${VAR} expansion, per-chat templates, precise errors."""

import json
from pathlib import Path

import pytest

from host.errors import ConfigError
from host.mcp.config import load_servers, parse_servers
from host.mcp.locations import own_scripts_folder


def parse(servers: dict[str, object], environ: dict[str, str] | None = None, key: str = "mcpServers") -> list:
    return parse_servers({key: servers}, source="mcp_servers.json", environ=environ or {})


def refused(servers: dict[str, object], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse(servers, environ)
    return str(caught.value)


def test_claude_desktop_dialect_with_inferred_transports() -> None:
    stdio, sse, http = parse(
        {
            "files": {"command": "npx", "args": ["-y", "server"], "env": {"A": "1"}, "cwd": "/tmp"},
            "events": {"url": "https://example.test/sse/", "headers": {"Authorization": "Bearer x"}},
            "remote": {"url": "https://example.test/mcp"},
        }
    )
    assert (stdio.name, stdio.transport, stdio.args, dict(stdio.env)) == (
        "files",
        "stdio",
        ("-y", "server"),
        {"A": "1"},
    )
    assert (sse.transport, dict(sse.headers)) == ("sse", {"Authorization": "Bearer x"})
    assert http.transport == "http"
    assert (stdio.timeout, stdio.scope, stdio.disabled) == (60.0, "shared", False)


def test_vs_code_dialect_and_transport_aliases() -> None:
    servers = parse(
        {
            "a": {"type": "stdio", "command": "srv"},
            "b": {"type": "streamable-http", "url": "http://localhost:1/sse"},
            "c": {"transport": "streamable_http", "url": "http://localhost:1/x"},
            "d": {"type": "sse", "url": "http://localhost:1/events"},
        },
        key="servers",
    )
    assert [server.transport for server in servers] == ["stdio", "http", "http", "sse"]


def test_unknown_top_level_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"globalShortcut": "x", "inputs": [], "mcpServers": {"a": {"command": "srv"}}}))
    assert [server.name for server in load_servers(path)] == ["a"]


def test_environment_variables_are_expanded_with_defaults() -> None:
    [server] = parse(
        {"a": {"command": "${BIN}", "args": ["--db", "${DB:-demo.db}"], "env": {"TOKEN": "${TOKEN}"}}},
        environ={"BIN": "/usr/bin/srv", "TOKEN": "s3cret"},
    )
    assert (server.command, server.args, dict(server.env)) == ("/usr/bin/srv", ("--db", "demo.db"), {"TOKEN": "s3cret"})


def test_an_undefined_variable_names_file_server_field_and_variable() -> None:
    message = refused({"github": {"command": "srv", "env": {"GITHUB_TOKEN": "${GITHUB_PAT}"}}})
    assert message.startswith("mcp_servers.json: server 'github': field 'env.GITHUB_TOKEN'")
    assert "GITHUB_PAT is not set" in message


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"command": "srv", "colour": "red"}, "server 'bad': field 'colour': Extra inputs are not permitted"),
        ({"command": "srv", "timeout": -1}, "server 'bad': field 'timeout': Input should be greater than 0"),
        ({"command": "srv", "args": "--x"}, "server 'bad': field 'args': must be a list of strings"),
        ({"command": "srv", "args": [1]}, "server 'bad': field 'args.0': Input should be a valid string"),
        ({"type": "carrier-pigeon", "command": "srv"}, "server 'bad': field 'type': 'carrier-pigeon' is not one of"),
        ({"args": ["x"]}, "server 'bad': needs 'command' (a local server) or 'url' (a remote one)"),
        ({"type": "http", "url": "ftp://x"}, "server 'bad': settings: 'url' must start with http:// or https://"),
        ({"command": "srv", "url": "http://x"}, "server 'bad': settings: a stdio server takes 'command', not 'url'"),
        ({"command": "srv", "scope": "user"}, "server 'bad': field 'scope': Input should be 'shared' or 'chat'"),
        ({"command": "srv", "tools": {"only": ["a"]}}, "server 'bad': field 'tools.only': Extra inputs"),
        ({"command": "srv", "args": ["${CHAT_ID}"]}, 'only replaced in servers with "scope": "chat"'),
        ({"url": "http://x/${CHAT_ID}", "scope": "chat"}, "only replaced in 'args', 'env' values, 'cwd' and 'roots'"),
        ({"command": "srv", "args": ["${CHAT_ID:-0}"], "scope": "chat"}, "write ${CHAT_ID}, without a default"),
        ({"command": "srv", "roots": "/srv/files"}, "field 'roots': must be a list of strings, not one string"),
        ({"command": "srv", "roots": ["/srv/${CHAT_ID}"]}, 'only replaced in servers with "scope": "chat"'),
        ({"command": "srv", "disabled": "yes"}, "field 'disabled': Input should be a valid boolean"),
        ({"command": "srv", "timeout": True}, "field 'timeout': Input should be a valid number"),
        ({"command": "srv", "name": "other"}, "field 'name': not a setting"),
        ({"url": "http://x/mcp", "headers": {"Authorization": "Bearer t\n"}}, "header 'Authorization' has"),
        ("not an object", "server 'bad': must be an object of settings"),
    ],
)
def test_a_malformed_server_is_named_with_its_field(entry: object, expected: str) -> None:
    message = refused({"good": {"command": "srv"}, "bad": entry})
    assert message.startswith("mcp_servers.json: ")
    assert expected in message


def test_malformed_files_name_the_file_and_the_place(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    path.write_text('{"mcpServers": {"a": {"command": "srv",}}}')
    with pytest.raises(ConfigError, match=r"servers.json: invalid JSON at line 1, column 40"):
        load_servers(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_servers(tmp_path / "missing.json")
    path.write_text('{"tools": {}}')
    with pytest.raises(ConfigError, match='no "mcpServers"'):
        load_servers(path)


def test_chat_scope_replaces_chat_id_in_args_env_and_cwd_only() -> None:
    [server] = parse(
        {
            "ws": {
                "command": "srv",
                "args": ["--root", "/data/${CHAT_ID}"],
                "env": {"ROOT": "/data/${CHAT_ID}", "HOME": "${HOME:-/root}"},
                "cwd": "/data/${CHAT_ID}",
                "scope": "chat",
                "tools": {"include": ["read_*"], "exclude": ["read_secret"]},
            }
        }
    )
    mine = server.for_chat(-1001234)
    assert mine.args == ("--root", "/data/-1001234")
    assert dict(mine.env) == {"ROOT": "/data/-1001234", "HOME": "/root"}
    assert mine.cwd == "/data/-1001234"
    assert server.args == ("--root", "/data/${CHAT_ID}")  # the template itself is unchanged


def test_the_shipped_config_starts_our_servers_from_the_bots_own_environment(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    files, database = load_servers(root / "mcp_servers.json", environ={}, data_dir=tmp_path / "data")
    assert files.command == str(own_scripts_folder() / "mcpbot-filesystem")
    assert database.command == str(own_scripts_folder() / "mcpbot-database")
    assert Path(files.command).is_file() and Path(database.command).is_file()
    assert files.for_chat(7).args == ("--root", f"{tmp_path}/data/workspaces/7")
    assert database.cwd == str(root)  # so its relative sqlite:///servers/database/demo.db is the repository's
    assert (root / "servers" / "database" / "demo.db").is_file()


def test_commands_are_found_in_the_bots_environment_then_on_path(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "mcp.json"
    path.parent.mkdir()
    servers = {
        "python": {"command": "python"},
        "npx": {"command": "npx"},
        "relative": {"command": "./bin/server", "cwd": "work"},
        "parent": {"command": "../tools/server", "cwd": "/srv/somewhere"},
        "home": {"command": "~/bin/server", "cwd": "~/work"},
        "remote": {"url": "http://localhost:1/mcp"},
    }
    path.write_text(json.dumps({"mcpServers": servers}))
    located = {server.name: (server.command, server.cwd) for server in load_servers(path, environ={})}
    conf, home = str(path.parent), str(Path.home())
    assert located == {
        "python": (str(own_scripts_folder() / "python"), conf),  # not whatever `python` PATH has, if any
        "npx": ("npx", conf),  # not in the bot's environment: looked up on PATH when it starts
        "relative": (f"{conf}/bin/server", f"{conf}/work"),
        "parent": (f"{tmp_path}/tools/server", "/srv/somewhere"),
        "home": (f"{home}/bin/server", f"{home}/work"),
        "remote": (None, None),
    }


def test_config_dir_and_data_dir_are_defined_and_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "conf" / "mcp.json"
    path.parent.mkdir()
    entry = {"command": "srv", "args": ["${CONFIG_DIR}/db.sqlite", "${DATA_DIR}/ws"], "env": {"D": "${DATA_DIR}"}}
    path.write_text(json.dumps({"mcpServers": {"a": entry}}))
    environ = {"CONFIG_DIR": "/elsewhere", "DATA_DIR": "/x"}  # the file's own values win
    [server] = load_servers(Path("conf/mcp.json"), environ=environ, data_dir=Path("state"))
    assert server.args == (f"{tmp_path}/conf/db.sqlite", f"{tmp_path}/state/ws")
    assert dict(server.env) == {"D": f"{tmp_path}/state"}
    with pytest.raises(ConfigError, match="environment variable DATA_DIR is not set"):
        load_servers(path, environ={})


def test_a_variable_inside_a_default_is_refused_not_garbled() -> None:
    message = refused({"a": {"command": "srv", "args": ["${URL:-sqlite:///${CONFIG_DIR}/x.db}"]}})
    assert message == "mcp_servers.json: server 'a': field 'args.0': a default may not contain another ${...}"


def test_integer_seconds_are_fine() -> None:
    [server] = parse({"a": {"command": "srv", "timeout": 5, "init_timeout": 2.5}})
    assert (server.timeout, server.init_timeout) == (5.0, 2.5)


def test_server_names_cannot_contain_the_tool_name_separator() -> None:
    assert "may not contain '__'" in refused({"my__server": {"command": "srv"}})


def test_a_server_listed_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text('{"mcpServers": {"a": {"command": "one"}, "a": {"command": "two"}}}')
    with pytest.raises(ConfigError, match="the key 'a' appears twice"):
        load_servers(path)


def test_secrets_stay_out_of_the_config_repr() -> None:
    [server] = parse({"a": {"url": "https://x/mcp?key=s3cret", "headers": {"Authorization": "Bearer s3cret"}}})
    assert "s3cret" not in repr(server)
