"""The MCP host: server configuration, one connection per server, and the registry that routes tool calls.

Never imports the engine, storage or telegram packages.
"""
