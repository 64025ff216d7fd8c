"""mcpbot's own MCP servers. Each runs standalone under any MCP host; none imports `host`."""
