"""The host's one error tree. Foreign errors are translated into these at the edge that owns the library.

    HostError
    ├── ConfigError          a settings value or mcp_servers.json is malformed (names file, server, field)
    ├── ModelUnavailable     the model server cannot be reached or keeps failing; the user's message is kept
    ├── StorageError         the conversation store could not be reached or refused an operation
                             (raised by host/storage/repository.py, which owns the database libraries)
    └── ToolError            a tool could not be called at all (its result never came back)
        ├── UnknownToolError     no tool by that name in the catalogue
        └── ServerUnavailable    the tool's server is not connected (starting, failed, restarting)

A tool that ran and reported a failure is not an exception: it is a ToolResult with is_error=True.
"""


class HostError(Exception):
    """Base of every error the host raises on purpose."""


class ConfigError(HostError):
    """Configuration that cannot be used; the message says where and why."""


class ModelUnavailable(HostError):
    """The model could not be reached or kept failing after the retries; the message is fit for a user."""


class StorageError(HostError):
    """The conversation store could not be reached or refused an operation; the message says which."""


class ToolError(HostError):
    """A tool call that could not be made."""


class UnknownToolError(ToolError):
    """The catalogue has no tool by that name."""


class ServerUnavailable(ToolError):
    """The server that owns the tool is not connected right now."""
