"""structlog set-up, done once per process: JSON lines when stderr is not a terminal, colours when it is.

Context (chat_id, user_id, server, tool) is bound with structlog.contextvars and appears on every line.
"""

import logging
import sys
from typing import Literal

import structlog

_configured = False
_secrets: set[str] = set()


def hide(secret: str) -> None:
    """Mask this value wherever it would appear in a log line from now on (a bot token sits in every Bot API
    URL, so a library that logs its requests would otherwise print it)."""
    if len(secret) >= 8:
        _secrets.add(secret)


def _redact(_logger: object, _method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    if _secrets:
        for key, value in event.items():
            if isinstance(value, str) and any(secret in value for secret in _secrets):
                for secret in _secrets:
                    value = value.replace(secret, "***")
                event[key] = value
    return event


def configure_logging(level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto") -> None:
    """Send structlog and stdlib logging to stderr at `level`; stdout stays free for command output."""
    global _configured
    if _configured:
        return
    _configured = True
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    last: list[structlog.types.Processor] = [structlog.processors.format_exc_info, _redact, renderer]
    numeric = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*shared, *last],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *last], foreign_pre_chain=shared
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # The SDKs are chatty at INFO (every HTTP request); keep them a level quieter than ours.
    root.setLevel(max(numeric, logging.WARNING))
    for chatty in ("httpx", "httpcore"):  # they log every request URL, and Bot API URLs carry the token
        logging.getLogger(chatty).setLevel(logging.WARNING)
