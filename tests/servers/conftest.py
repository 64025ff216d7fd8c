"""Fixtures for our own MCP servers: running them over stdio and HTTP, and MCP Inspector's CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import StdioServerParameters

from tests.conftest import NODE_BIN, ROOT


def stdio_params(module: str, *args: str, env: dict[str, str] | None = None) -> StdioServerParameters:
    """`python -m servers.X args...` as an SDK stdio target, run from the repository root."""
    return StdioServerParameters(command=sys.executable, args=["-m", module, *args], cwd=str(ROOT), env=env)


def inspector(tmp_path: Path, *args: str) -> Any:
    """Run MCP Inspector's CLI (`mcp-inspector --cli ARGS`) and return the JSON it prints."""
    binary = NODE_BIN / "mcp-inspector"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run `npm ci` (the README's test command does)")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    done = subprocess.run([str(binary), "--cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr or done.stdout
    return json.loads(done.stdout)
