"""The filesystem MCP server: file tools confined to one workspace directory. Never imports `host`."""
