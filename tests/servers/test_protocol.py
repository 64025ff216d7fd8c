"""What all three of our servers answer alike over a real stdio connection, in both protocol eras: their version
in serverInfo, and INVALID_PARAMS (-32602) for an unknown prompt or resource or a missing prompt argument.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import mcp_types
import pytest
from mcp import Client, MCPError

from servers.protocol import package_version
from tests.conftest import ROOT
from tests.servers.conftest import stdio_params

pytestmark = pytest.mark.anyio

MODES: list[Literal["auto", "legacy"]] = ["auto", "legacy"]


def server_args(module: str, tmp_path: Path) -> list[str]:
    if module == "servers.filesystem":
        return ["--root", str(tmp_path / "workspace")]
    if module == "servers.database":
        return ["--url", f"sqlite:///{ROOT / 'servers' / 'database' / 'demo.db'}"]
    return []


async def error_code(request: Callable[[], Awaitable[Any]]) -> tuple[int, str]:
    with pytest.raises(MCPError) as raised:
        with anyio.fail_after(10):
            await request()
    return raised.value.error.code, raised.value.error.message


def test_the_version_is_the_one_in_pyproject() -> None:
    assert f'\nversion = "{package_version()}"\n' in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("module", ["servers.template", "servers.filesystem", "servers.database"])
async def test_version_and_invalid_params(module: str, mode: Literal["auto", "legacy"], tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with Client(stdio_params(module, *server_args(module, tmp_path)), mode=mode) as client:
            assert client.server_info.name == module.removeprefix("servers.")
            assert client.server_info.version == package_version() != ""
            code, message = await error_code(lambda: client.get_prompt("no-such-prompt", {}))
            assert (code, message) == (mcp_types.INVALID_PARAMS, "Unknown prompt: 'no-such-prompt'")
            code, message = await error_code(lambda: client.read_resource(f"{client.server_info.name}://no-such"))
            assert code == mcp_types.INVALID_PARAMS and "Unknown resource" in message
            with anyio.fail_after(10):
                assert (await client.list_tools()).tools  # still serving after the errors


@pytest.mark.parametrize("mode", MODES)
async def test_a_missing_prompt_argument_is_invalid_params(mode: Literal["auto", "legacy"]) -> None:
    with anyio.fail_after(30):
        async with Client(stdio_params("servers.template"), mode=mode) as client:
            code, message = await error_code(lambda: client.get_prompt("summarize", {}))
            assert (code, message) == (mcp_types.INVALID_PARAMS, "Prompt 'summarize' needs the argument(s) text")
            with anyio.fail_after(10):
                prompt = await client.get_prompt("summarize", {"text": "Short."})
            assert "Short." in prompt.messages[0].content.text  # type: ignore[union-attr]
