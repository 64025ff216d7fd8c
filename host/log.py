"""structlog set-up, done once per process: JSON lines when stderr is not a terminal, colours when it is.

Context (chat_id, user_id, server, tool) is bound with structlog.contextvars and appears on every line. Every
line goes through redaction (hidden values, host.redact's credentials, host.personal's e-mail addresses,
phone and card numbers); Throttle keeps floods to a few lines.
"""

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Literal

import structlog

from host.personal import mask_personal
from host.redact import mask, redact

_configured = False
_secrets: set[str] = set()


def hide(secret: str) -> None:
    """Mask this value wherever it would appear in a log line from now on (a bot token sits in every Bot API
    URL, so a library that logs its requests would otherwise print it)."""
    if len(secret) >= 8:
        _secrets.add(secret)


def _redact(_logger: object, _method: str, event: structlog.types.EventDict) -> structlog.types.EventDict:
    """Every string of the line (nested ones too) without hidden values and credential-looking parts."""
    for key, value in event.items():
        event[key] = _masked(value)
    return event


def _masked(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return mask_personal(redact(mask(value, _secrets)))
    if depth < 4 and isinstance(value, dict):
        return {key: _masked(item, depth + 1) for key, item in value.items()}
    if depth < 4 and isinstance(value, list | tuple):
        return [_masked(item, depth + 1) for item in value]
    return value


class Throttle:
    """At most one line per `every` seconds for each key (a flood of refused requests writes a few lines):
    `admit(key)` is None when this line is held back, else how many were held back since the last one."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def admit(self, key: str) -> int | None:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


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
