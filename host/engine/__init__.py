"""The engine: model client, tool-call loop and token window; imports storage and mcp, never telegram."""
