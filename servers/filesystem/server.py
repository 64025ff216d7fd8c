"""The filesystem server's tools: thin MCP wrappers around `workspace.Workspace`, each with annotations that tell the
truth, and every refusal turned into a tool error with its reason. Never imports `host`.
"""

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from servers.protocol import Server

from .confine import PathRefused
from .quota import QuotaExceeded
from .workspace import Limits, Workspace

NAME = "filesystem"
logger = logging.getLogger("servers.filesystem")

INSTRUCTIONS = """\
Files in one workspace directory. Every path is relative to the workspace root and uses '/', e.g. 'notes/todo.md';
'.' is the root. Absolute paths, '..', '~', environment variables and backslashes are refused, and symlinks are
followed only while they stay inside the workspace. Start with list_directory or search_files to find files,
read_file to read text (binary files are described, not shown), write_file to create or replace a text file
(missing directories are created), and move_file, delete_file, delete_directory, create_directory and file_info for
the rest; delete_directory with recursive=true deletes a directory and everything in it ('.' empties the
workspace), a bounded number of entries per call. Reads and writes are capped in size, and the workspace has a quota
of bytes, entries and depth; a refused call says why and how much room is left."""

READS = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
REPLACES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
MOVES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)

FilePath = Annotated[str, Field(description="Path of a file relative to the workspace root, e.g. 'notes/todo.md'")]
DirectoryPath = Annotated[str, Field(description="Path of a directory relative to the workspace root; '.' is the root")]


@contextlib.contextmanager
def refusals_as_tool_errors(tool: str) -> Iterator[None]:
    """A refusal becomes a tool error whose text the model sees; the server keeps serving."""
    try:
        yield
    except (PathRefused, QuotaExceeded) as refusal:
        logger.debug("%s refused: %s", tool, refusal)
        raise ToolError(str(refusal)) from None
    except OSError as error:  # not expected: every operation maps its own errors, but never crash or leak a path
        logger.warning("%s failed: %s", tool, error)
        raise ToolError(f"{tool} failed: {os.strerror(error.errno or 0)}") from None


def build_server(root: Path, limits: Limits | None = None) -> MCPServer:
    """An MCPServer whose tools work inside `root` (resolved once, so a root reached through a symlink works)."""
    workspace = Workspace(root, limits)
    limits = workspace.limits
    server = Server(NAME, instructions=INSTRUCTIONS)

    @server.tool(annotations=READS)
    def read_file(file_path: FilePath) -> str:
        """Read a UTF-8 text file. Binary files are described (size, guessed type) instead of shown."""
        with refusals_as_tool_errors("read_file"):
            return workspace.read_file(file_path)

    @server.tool(annotations=REPLACES)
    def write_file(file_path: FilePath, content: Annotated[str, Field(description="The whole new text")]) -> str:
        """Create or replace a text file with the content (UTF-8), atomically. Missing directories are created."""
        with refusals_as_tool_errors("write_file"):
            return workspace.write_file(file_path, content)

    @server.tool(annotations=READS)
    def list_directory(directory: DirectoryPath = ".") -> str:
        """List a directory: subdirectories end with '/', files show their size in bytes."""
        with refusals_as_tool_errors("list_directory"):
            return workspace.list_directory(directory)

    @server.tool(annotations=READS)
    def search_files(
        pattern: Annotated[str, Field(description="A glob such as '*.md' or 'notes/*.txt', or text in the name")],
        directory: DirectoryPath = ".",
    ) -> str:
        """Find files and directories under a directory by name: a glob, or else a case-insensitive substring."""
        with refusals_as_tool_errors("search_files"):
            return workspace.search_files(pattern, directory)

    @server.tool(annotations=MOVES)
    def move_file(
        source: Annotated[str, Field(description="The file or directory to move, relative to the workspace root")],
        destination: Annotated[str, Field(description="Its new path; must not exist yet")],
    ) -> str:
        """Move or rename a file or directory inside the workspace. An existing destination is never overwritten."""
        with refusals_as_tool_errors("move_file"):
            return workspace.move_file(source, destination)

    @server.tool(annotations=REPLACES)
    def delete_file(file_path: FilePath) -> str:
        """Delete one file (or a symlink itself). Directories are refused: see delete_directory."""
        with refusals_as_tool_errors("delete_file"):
            return workspace.delete_file(file_path)

    @server.tool(annotations=REPLACES)
    def delete_directory(
        directory: DirectoryPath,
        recursive: Annotated[
            bool, Field(description="Also delete everything in it; '.' then empties the workspace but keeps the root")
        ] = False,
    ) -> str:
        """Delete an empty directory, or with recursive=true a directory and everything in it (symlinks inside are
        removed, never followed). One call deletes a bounded number of entries and says how many are left."""
        with refusals_as_tool_errors("delete_directory"):
            return workspace.delete_directory(directory, recursive)

    @server.tool(annotations=ADDS)
    def create_directory(directory: DirectoryPath) -> str:
        """Create a directory and any missing parents. An existing directory is fine."""
        with refusals_as_tool_errors("create_directory"):
            return workspace.create_directory(directory)

    @server.tool(annotations=READS)
    def file_info(file_path: FilePath) -> str:
        """Type, size in bytes, modification time (UTC) and permissions of a file or directory."""
        with refusals_as_tool_errors("file_info"):
            return workspace.file_info(file_path)

    logger.debug("workspace %s, limits %s", workspace.root, limits)
    return server
