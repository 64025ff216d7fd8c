"""The webhook's HTTP server: uvicorn (h11) with limits it lacks. At most `max_connections` are open (at the cap
a new one pushes out the oldest that has not sent a request yet); a request's head and its body must each
arrive within `read_timeout` seconds; uvicorn's own warnings are throttled. Imports host.log only.
"""

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import h11
import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from host.log import Throttle

log = structlog.get_logger("host.telegram")

Phase = Literal["head", "body"]


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int = 200
    read_timeout: float = 10.0  # for a request's head, and again for its body
    keep_alive: int = 5  # seconds an idle connection stays open after a response


class WebServer(uvicorn.Server):
    """`await WebServer(app, limits, refusals).serve([socket])`; stop with `should_exit = True`."""

    def __init__(self, app: ASGIApp, limits: Limits, refusals: Throttle) -> None:
        _throttle_uvicorn_warnings(refusals)
        config = uvicorn.Config(
            app,
            http=_guarded_protocol(limits, refusals),
            ws="none",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_keep_alive=limits.keep_alive,
            timeout_graceful_shutdown=5,
        )
        super().__init__(config)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGINT/SIGTERM belong to the bot, which stops this server in its turn


def refused(refusals: Throttle, reason: str, **fields: Any) -> None:
    """One warning for a refused request or connection, at most one a minute for each reason."""
    held = refusals.admit(reason)
    if held is not None:
        log.warning("webhook_refused", reason=reason, **fields, **({"suppressed": held} if held else {}))


def _guarded_protocol(limits: Limits, refusals: Throttle) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with the cap and the deadlines; one class per server, sharing its `waiting`."""
    waiting: dict[Any, None] = {}  # GuardedProtocols with no request under way, oldest first

    class GuardedProtocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _phase: Phase | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                oldest = next(iter(waiting), None)
                if oldest is None:  # every connection is busy with a request: this one must go
                    refused(refusals, "too many connections", cap=limits.max_connections)
                    self.transport.abort()
                    return
                refused(refusals, "too many connections, the oldest idle one closed", cap=limits.max_connections)
                oldest._drop()
            waiting[self] = None
            self._arm("head")

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            state = self.conn.their_state
            if state is h11.IDLE and self._phase is None and not self.transport.is_closing():
                self._arm("head")  # a next request on a kept-alive connection has begun
            elif state is h11.SEND_BODY and self._phase != "body":
                waiting.pop(self, None)
                self._arm("body")
            elif state not in (h11.IDLE, h11.SEND_BODY):  # the whole request is in: the app has it
                waiting.pop(self, None)
                self._disarm()

        def on_response_complete(self) -> None:
            self._disarm()
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                waiting[self] = None  # kept alive, idle until its next request (uvicorn's keep-alive timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            waiting.pop(self, None)
            self._disarm()
            super().connection_lost(exc)

        def _arm(self, phase: Phase) -> None:
            self._disarm()
            self._phase = phase
            self._timer = self.loop.call_later(limits.read_timeout, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._phase = None, None

        def _expired(self) -> None:
            what = "request head" if self._phase == "head" else "request body"
            refused(refusals, f"{what} not read within {limits.read_timeout:g} s")
            self._drop()

        def _drop(self) -> None:
            waiting.pop(self, None)
            self._disarm()
            self.transport.abort()  # no lingering close: the file descriptor is freed now

    return GuardedProtocol


class _ThrottledWarnings(logging.Filter):
    """uvicorn warns once per bad request ("Invalid HTTP request received."): at most one line a minute each."""

    def __init__(self, refusals: Throttle) -> None:
        super().__init__()
        self.refusals = refusals

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            return True
        held = self.refusals.admit(f"uvicorn: {record.msg}")
        if held:
            record.msg, record.args = f"{record.getMessage()} ({held} more suppressed)", None
        return held is not None


def _throttle_uvicorn_warnings(refusals: Throttle) -> None:
    logger = logging.getLogger("uvicorn.error")
    logger.filters = [f for f in logger.filters if not isinstance(f, _ThrottledWarnings)]
    logger.addFilter(_ThrottledWarnings(refusals))
