"""`python -m servers.filesystem [--root DIR] [--transport stdio|sse|streamable-http] [--host H] [--port P]`.

Options and the workspace root only; the tools are in `server`, the operations in `workspace`, confinement in
`confine`. Never imports `host`.
"""

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from servers import launch

from .confine import MIB
from .quota import MAX_LEVELS
from .server import NAME, build_server
from .workspace import GIB, Limits

ROOT_VARIABLE = "MCP_FILESYSTEM_BASE_PATH"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def depth(text: str) -> int:
    value = positive(text)
    if value > MAX_LEVELS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LEVELS}, not {value}")
    return value


def parse_options(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"mcpbot-{NAME}", description="File tools confined to one workspace.")
    parser.add_argument(
        "--root",
        default=os.environ.get(ROOT_VARIABLE) or "./workspace",
        help=f"the workspace directory, created if missing (default: ${ROOT_VARIABLE}, else ./workspace)",
    )
    parser.add_argument("--max-read-bytes", type=positive, default=MIB, help="largest file read_file returns")
    parser.add_argument("--max-write-bytes", type=positive, default=MIB, help="largest content write_file accepts")
    parser.add_argument("--max-list-entries", type=positive, default=1000, help="entries list_directory shows")
    parser.add_argument("--max-search-results", type=positive, default=200, help="matches search_files shows")
    parser.add_argument(
        "--max-workspace-bytes", type=positive, default=GIB, help="total bytes of files the workspace may hold"
    )
    parser.add_argument(
        "--max-workspace-entries",
        type=positive,
        default=100_000,
        help="files, directories and symlinks the workspace may hold",
    )
    parser.add_argument(
        "--max-depth", type=depth, default=64, help=f"levels below the root an entry may be (at most {MAX_LEVELS})"
    )
    parser.add_argument(
        "--max-delete-entries", type=positive, default=10_000, help="entries one recursive delete_directory removes"
    )
    launch.add_transport_arguments(parser)
    options = parser.parse_args(argv)
    root = Path(options.root)
    if root.exists() and not root.is_dir():
        parser.error(f"the workspace {str(root)!r} is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"cannot create the workspace {str(root)!r}: {error.strerror}")
    return options


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    limits = Limits(
        max_read_bytes=options.max_read_bytes,
        max_write_bytes=options.max_write_bytes,
        max_list_entries=options.max_list_entries,
        max_search_results=options.max_search_results,
        max_workspace_bytes=options.max_workspace_bytes,
        max_workspace_entries=options.max_workspace_entries,
        max_depth=options.max_depth,
        max_delete_entries=options.max_delete_entries,
    )
    launch.run(build_server(Path(options.root), limits), options)


if __name__ == "__main__":
    main()
