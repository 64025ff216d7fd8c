"""The smallest complete MCP server: one tool, one resource, one prompt. Copy this folder to start your own."""
