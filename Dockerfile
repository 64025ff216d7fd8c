# The mcpbot image: the bot (`mcpbot run`), our three MCP servers (mcpbot-filesystem, mcpbot-database,
# mcpbot-template), uv/uvx for PyPI-based MCP servers and Node.js (node, npm, npx) for npm-based ones.
#
#   docker build -t mcpbot .                      # the full image
#   docker build --target slim -t mcpbot:slim .   # the same without Node.js
#   docker run --init --env-file .env -v mcpbot-data:/data mcpbot
#
# `--init` puts a small init process at PID 1 that reaps the orphans some MCP servers leave (npx starts node as a
# child); the bot itself handles SIGTERM and stops its servers.
#
# Only the bot's own dependencies are installed (`--no-default-groups`): no test tools, no test model.
# tests/test_deploy.py performs the build stage's COPY and `uv sync` steps in a clean folder, so keep them simple.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS node

# ---- build: a virtual environment in /app/.venv from uv.lock ----
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app
# The dependencies first, in their own layer, so that a change to the code does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-default-groups --no-install-project
COPY README.md mcp_servers.json ./
COPY host/ host/
COPY servers/ servers/
RUN uv sync --locked --no-default-groups

# ---- slim: the bot and our servers, no Node.js ----
FROM ${PYTHON_IMAGE} AS slim
RUN useradd --system --no-log-init --create-home --home-dir /home/mcpbot --uid 10001 --user-group mcpbot \
    && mkdir /data \
    && chown mcpbot:mcpbot /data
COPY --from=build /usr/local/bin/uv /usr/local/bin/uvx /usr/local/bin/
COPY --from=build /app /app
WORKDIR /app
# DATA_DIR holds the SQLite database (unless DATABASE_URL names another) and the per-chat workspaces of the
# filesystem server. /metrics, /health and /ready are served on METRICS_PORT in polling mode (WEBHOOK_PORT with a
# webhook); the health check below asks whichever the bot serves.
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never \
    DATA_DIR=/data \
    METRICS_HOST=0.0.0.0 \
    METRICS_PORT=9464 \
    WEBHOOK_PORT=8080
VOLUME ["/data"]
EXPOSE 8080 9464
USER 10001:10001
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('WEBHOOK_PORT', '8080') if os.environ.get('TELEGRAM_WEBHOOK_URL') else os.environ.get('METRICS_PORT', '9464'); urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=4)"]
ENTRYPOINT ["mcpbot"]
CMD ["run"]

# ---- full (the default): slim plus Node.js from the official image, for `npx` MCP servers ----
FROM slim AS full
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
USER 0
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version \
    && npm --version
USER 10001:10001
