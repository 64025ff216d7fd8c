"""Log messages from MCP servers (`notifications/message`): written to the bot's own log at the matching level,
as `server_log` lines with the server's name, never shown to users or given to the model. The data is JSON of any
shape from a server we do not trust: it is cut to MAX_CHARS and its configured secrets are masked (host.log masks
the patterns of all secrets), and at most BURST lines per WINDOW seconds are written per server connection; the
rest are counted in one `server_log_dropped` line when the next window begins."""

import json
import logging
import time
from typing import Any

import mcp_types

from host.mcp.config import ServerConfig
from host.mcp.transports import hide_configured_secrets

MAX_CHARS = 2000
BURST = 50
WINDOW = 10.0

# MCP's syslog levels (RFC 5424; the SDK drops a message with another) on Python's
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "alert": logging.CRITICAL,
    "emergency": logging.CRITICAL,
}


class ServerLog:
    """The `logging_callback` of one server connection."""

    def __init__(self, config: ServerConfig, logger: Any) -> None:
        self._config = config
        self._log = logger
        self._window_start = time.monotonic()
        self._written = 0
        self._dropped = 0

    async def __call__(self, params: mcp_types.LoggingMessageNotificationParams) -> None:
        if not self._admitted():
            return
        data = params.data if isinstance(params.data, str) else json.dumps(params.data, ensure_ascii=False)
        text = hide_configured_secrets(data[:MAX_CHARS], self._config)
        self._log.log(LEVELS[params.level], "server_log", mcp_level=params.level, mcp_logger=params.logger, data=text)

    def _admitted(self) -> bool:
        now = time.monotonic()
        if now - self._window_start >= WINDOW:
            if self._dropped:
                self._log.warning("server_log_dropped", lines=self._dropped, seconds=WINDOW)
            self._window_start, self._written, self._dropped = now, 0, 0
        if self._written >= BURST:
            self._dropped += 1
            return False
        self._written += 1
        return True
