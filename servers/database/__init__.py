"""A read-only database MCP server (SQLite and PostgreSQL through SQLAlchemy); see README.md. Never imports `host`."""
