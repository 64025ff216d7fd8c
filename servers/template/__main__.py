"""`python -m servers.template [--transport stdio|sse|streamable-http] [--host H] [--port P]`."""

import argparse
from collections.abc import Sequence

from servers import launch

from .server import NAME, build_server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"mcpbot-{NAME}", description=f"The {NAME} MCP server.")
    launch.add_transport_arguments(parser)
    options = parser.parse_args(argv)
    launch.run(build_server(), options)


if __name__ == "__main__":
    main()
