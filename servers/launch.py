"""Command-line running shared by our servers: `--transport stdio|sse|streamable-http`, `--host`, `--port`,
logging to stderr (stdout belongs to the protocol in stdio mode), and DNS-rebinding protection over HTTP
on every address, not only loopback. Imports only the MCP SDK.
"""

import argparse
import logging
import sys
from typing import Any

from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_transport_arguments(parser: argparse.ArgumentParser, default_port: int = 8000) -> None:
    """The options every one of our servers takes."""
    parser.add_argument(
        "--transport",
        choices=["stdio", "sse", "streamable-http"],
        default="stdio",
        help="how hosts connect (default: stdio, for hosts that start the server themselves)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on over HTTP (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port over HTTP (default: {default_port})")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="another Host header to accept over HTTP, e.g. a public name behind a proxy (repeatable)",
    )
    parser.add_argument("--log-level", default="INFO", help="log level on stderr (default: INFO)")


def run(server: MCPServer[Any], options: argparse.Namespace) -> None:
    """Serve until stopped, on the transport the options name."""
    logging.basicConfig(
        level=options.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,  # the SDK configures logging on import; ours replaces it
    )
    if options.transport == "stdio":
        server.run()
        return
    security = transport_security(options.host, options.port, options.allowed_host)
    # uvicorn sends its access log to sys.stdout (resolved when it configures logging, inside server.run). Logs go to
    # stderr only, whatever the transport: nothing else of ours writes to stdout in this process, so point it there.
    sys.stdout = sys.stderr
    server.run(options.transport, host=options.host, port=options.port, transport_security=security)


def transport_security(host: str, port: int, extra_hosts: list[str]) -> TransportSecuritySettings:
    """Host/Origin checks that stay on whatever address the server listens on."""
    names = [*LOOPBACK, host] if host in LOOPBACK or host in ("0.0.0.0", "::") else [host]
    hosts = [f"{name}:{port}" if ":" not in name else f"[{name}]:{port}" for name in names]
    for name in extra_hosts:
        hosts += [name, f"{name}:*"] if ":" not in name else [name]
    origins = [f"http://{allowed}" for allowed in hosts] + [f"https://{allowed}" for allowed in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
