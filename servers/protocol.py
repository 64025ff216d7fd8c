"""What all our servers answer alike, whatever their tools: `serverInfo.version` is mcpbot's package version, and a
request that names an unknown prompt, or leaves out a prompt's required argument, is a JSON-RPC INVALID_PARAMS
error (-32602) instead of the SDK's internal error. Imports only the MCP SDK and the standard library.
"""

from importlib import metadata
from typing import Any

import mcp_types
from mcp import MCPError
from mcp.server import MCPServer
from mcp.server.lowlevel.server import LifespanResultT
from mcp.server.mcpserver import Context

PACKAGE = "mcpbot"
UNKNOWN_VERSION = "0+unknown"


def package_version() -> str:
    """mcpbot's installed version (the one in pyproject.toml), or `0+unknown` when run from a bare source tree."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


class Server(MCPServer[LifespanResultT]):
    """An MCPServer that reports our version and refuses bad prompt requests as INVALID_PARAMS.

    The SDK answers an unknown resource URI with INVALID_PARAMS already; an unknown prompt comes back as an
    internal error (-32603, or code 0 in the 2025-11-25 handshake era) because it is raised as a ValueError.
    """

    def __init__(self, name: str, **settings: Any) -> None:
        settings.setdefault("version", package_version())
        super().__init__(name, **settings)

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[LifespanResultT, Any] | None = None
    ) -> mcp_types.GetPromptResult | mcp_types.InputRequiredResult:
        prompt = next((prompt for prompt in await self.list_prompts() if prompt.name == name), None)
        if prompt is None:
            raise MCPError(mcp_types.INVALID_PARAMS, f"Unknown prompt: {name!r}", {"name": name})
        given = arguments or {}
        required = [argument.name for argument in prompt.arguments or [] if argument.required]
        missing = sorted(name for name in required if name not in given)
        if missing:
            raise MCPError(
                mcp_types.INVALID_PARAMS, f"Prompt {name!r} needs the argument(s) {', '.join(missing)}", {"name": name}
            )
        return await super().get_prompt(name, arguments, context)
