"""mcp_servers.json: parse, expand `${VAR}` and `${VAR:-default}`, validate, and name every fault precisely.

Reads the Claude Desktop dialect (`mcpServers`) and VS Code's (`servers`). Besides the environment, `${CONFIG_DIR}`
(the file's folder) and `${DATA_DIR}` (the bot's data folder) are defined. Imports only errors and locations.
"""

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

from host.errors import ConfigError
from host.mcp.locations import locate_command, locate_folder

Transport = Literal["stdio", "sse", "http"]
CHAT_ID_PLACEHOLDER = "${CHAT_ID}"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TRANSPORT_ALIASES: dict[str, "Transport"] = {
    "stdio": "stdio",
    "sse": "sse",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamableHttp": "http",
}


class ToolFilter(BaseModel):
    """Which of a server's tools the model may see: glob patterns on the server's own tool names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()


class ServerConfig(BaseModel):
    """One entry of mcp_servers.json after expansion and validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    transport: Transport
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = Field(default_factory=dict, repr=False)
    cwd: str | None = None
    roots: tuple[str, ...] = ()  # folders offered as MCP roots (a per-chat server without them: its chat's folders)
    url: str | None = Field(default=None, repr=False)
    headers: Mapping[str, str] = Field(default_factory=dict, repr=False)
    disabled: StrictBool = False
    timeout: float = Field(default=60.0, gt=0, strict=True, description="seconds for one tool call")
    init_timeout: float = Field(default=30.0, gt=0, strict=True, description="seconds to start and list tools")
    tools: ToolFilter = ToolFilter()
    scope: Literal["shared", "chat"] = "shared"
    idle_timeout: float = Field(
        default=600.0, gt=0, strict=True, description="seconds an unused per-chat instance lives"
    )

    @field_validator("name")
    @classmethod
    def _name_without_separator(cls, value: str) -> str:
        if "__" in value:
            raise ValueError("a server name may not contain '__' (it separates server and tool in tool names)")
        return value

    @field_validator("headers")
    @classmethod
    def _clean_header_values(cls, value: Mapping[str, str]) -> Mapping[str, str]:
        for header, text in value.items():
            if text != text.strip() or any(ord(char) < 32 for char in text):
                raise ValueError(f"the value of header {header!r} has surrounding spaces or control characters")
        return value

    @field_validator("args", "roots", mode="before")
    @classmethod
    def _args_list(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError("must be a list of strings, not one string")
        return value

    @model_validator(mode="after")
    def _transport_fields(self) -> "ServerConfig":
        if self.transport == "stdio":
            if not self.command:
                raise ValueError("a stdio server needs 'command'")
            if self.url or self.headers:
                raise ValueError("a stdio server takes 'command', not 'url' or 'headers'")
        else:
            if not self.url:
                raise ValueError(f"an {self.transport} server needs 'url'")
            if not self.url.startswith(("http://", "https://")):
                raise ValueError("'url' must start with http:// or https://")
            if self.command or self.args or self.env or self.cwd:
                raise ValueError("a remote server takes 'url' and 'headers', not 'command', 'args', 'env' or 'cwd'")
        templated = [*self.args, *self.env.values(), self.cwd or "", *self.roots]
        if any(CHAT_ID_PLACEHOLDER in text for text in templated) and self.scope != "chat":
            raise ValueError(f'{CHAT_ID_PLACEHOLDER} is only replaced in servers with "scope": "chat"')
        elsewhere = [self.command or "", self.url or "", *self.headers.values(), *self.headers, *self.env]
        if any(CHAT_ID_PLACEHOLDER in text for text in elsewhere):
            raise ValueError(f"{CHAT_ID_PLACEHOLDER} is only replaced in 'args', 'env' values, 'cwd' and 'roots'")
        return self

    def for_chat(self, chat_id: int) -> "ServerConfig":
        """This server's settings for one chat: `${CHAT_ID}` replaced in args, env, cwd and roots; without roots of
        its own, the chat's folders (chat_paths) are its roots."""
        chat = str(chat_id)
        roots = tuple(root.replace(CHAT_ID_PLACEHOLDER, chat) for root in self.roots) or tuple(
            chat_paths(self, chat_id)
        )
        return self.model_copy(
            update={
                "args": tuple(arg.replace(CHAT_ID_PLACEHOLDER, chat) for arg in self.args),
                "env": {key: value.replace(CHAT_ID_PLACEHOLDER, chat) for key, value in self.env.items()},
                "cwd": self.cwd.replace(CHAT_ID_PLACEHOLDER, chat) if self.cwd else None,
                "roots": roots or tuple(chat_paths(self, chat_id)),
            }
        )


def chat_paths(config: ServerConfig, chat_id: int) -> list[str]:
    """The absolute paths a chat's instance is given through `${CHAT_ID}` (its cwd, an argument or an argument's
    `--flag=value`): where a per-chat server keeps the chat's files, for /forget."""
    values = [config.cwd or "", *config.args]
    templated = [value.partition("=")[2] if value.startswith("-") else value for value in values]
    chat = str(chat_id)
    return [
        value.replace(CHAT_ID_PLACEHOLDER, chat)
        for value in templated
        if CHAT_ID_PLACEHOLDER in value and os.path.isabs(value.replace(CHAT_ID_PLACEHOLDER, chat))
    ]


def load_servers(
    path: Path, environ: Mapping[str, str] | None = None, *, data_dir: Path | None = None
) -> list[ServerConfig]:
    """Read, expand and validate the server list; every fault is one ConfigError naming file, server, field.

    Stdio servers are located from the file's folder (see locations.py); `${CONFIG_DIR}` is that folder and
    `${DATA_DIR}` is `data_dir` (both absolute), whatever the environment says."""
    environ = os.environ if environ is None else environ
    config_dir = Path(os.path.abspath(path)).parent
    builtins = {"CONFIG_DIR": str(config_dir)}
    if data_dir is not None:
        builtins["DATA_DIR"] = os.path.abspath(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (set MCP_SERVERS_CONFIG to the server list)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from None
    try:
        document = json.loads(text, object_pairs_hook=_refuse_duplicates)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: the key {exc} appears twice in one object") from None
    return parse_servers(document, source=str(path), environ={**environ, **builtins}, base_dir=config_dir)


class _DuplicateKey(ValueError):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys without a word; a server list must not."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(repr(key))
        result[key] = value
    return result


def parse_servers(
    document: object, *, source: str, environ: Mapping[str, str], base_dir: Path | None = None
) -> list[ServerConfig]:
    """Validate an already decoded document; `source` names it in messages. With `base_dir`, stdio servers'
    commands and working folders are located from it."""
    if not isinstance(document, dict):
        raise ConfigError(f'{source}: the top level must be a JSON object with "mcpServers"')
    key = "mcpServers" if "mcpServers" in document else "servers" if "servers" in document else None
    if key is None:
        raise ConfigError(f'{source}: no "mcpServers" (or VS Code\'s "servers") object found')
    entries = document[key]
    if not isinstance(entries, dict):
        raise ConfigError(f'{source}: "{key}" must be an object mapping server names to settings')
    servers = []
    for name, raw in entries.items():
        where = f"{source}: server {name!r}"
        if not name or not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be an object of settings")
        expanded = _expand(raw, environ, where, path=())
        server = _validate(name, expanded, where)
        if base_dir is not None and server.command is not None:
            located = {"command": locate_command(server.command, base_dir), "cwd": locate_folder(server.cwd, base_dir)}
            server = server.model_copy(update=located)
        if base_dir is not None and server.roots:
            server = server.model_copy(update={"roots": tuple(locate_folder(root, base_dir) for root in server.roots)})
        servers.append(server)
    return servers


def _validate(name: str, raw: dict[str, Any], where: str) -> ServerConfig:
    fields = dict(raw)
    if "name" in fields:
        raise ConfigError(f"{where}: field 'name': not a setting (the entry's key is the server's name)")
    if "type" in fields and "transport" in fields:
        raise ConfigError(f"{where}: field 'type': give 'type' or 'transport', not both")
    kind_field = "type" if "type" in fields else "transport"
    kind = fields.pop(kind_field, None)
    if kind is None:
        transport = _infer_transport(fields, where)
    elif isinstance(kind, str) and kind in _TRANSPORT_ALIASES:
        transport = _TRANSPORT_ALIASES[kind]
    else:
        choices = ", ".join(sorted(_TRANSPORT_ALIASES))
        raise ConfigError(f"{where}: field '{kind_field}': {kind!r} is not one of {choices}")
    try:
        return ServerConfig(name=name, transport=transport, **fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        label = f"field '{field}'" if field else "settings"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {label}: {message}{more}") from None


def _infer_transport(fields: dict[str, Any], where: str) -> Transport:
    if "command" in fields:
        return "stdio"
    url = fields.get("url")
    if isinstance(url, str):
        path = url.split("?", 1)[0].split("#", 1)[0].rstrip("/")
        return "sse" if path.endswith("/sse") else "http"
    raise ConfigError(f"{where}: needs 'command' (a local server) or 'url' (a remote one)")


def _expand(value: Any, environ: Mapping[str, str], where: str, path: tuple[str, ...]) -> Any:
    """Replace `${VAR}` / `${VAR:-default}` in every string; `${CHAT_ID}` is left for per-chat instances."""
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            variable, default = match.group(1), match.group(2)
            if variable == "CHAT_ID":
                if default is not None:
                    raise ConfigError(
                        f"{where}: field '{'.'.join(path)}': write {CHAT_ID_PLACEHOLDER}, without a default"
                    )
                return match.group(0)
            if default is not None and "${" in default:
                raise ConfigError(f"{where}: field '{'.'.join(path)}': a default may not contain another ${{...}}")
            if variable in environ:
                return environ[variable]
            if default is not None:
                return default
            field = ".".join(path) or "value"
            raise ConfigError(
                f"{where}: field '{field}': environment variable {variable} is not set "
                f"(write ${{{variable}:-default}} to give a default)"
            )

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, dict):
        return {key: _expand(item, environ, where, (*path, str(key))) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, environ, where, (*path, str(index))) for index, item in enumerate(value)]
    return value
