"""What probes and Prometheus ask the bot, served on the webhook's port and, with METRICS_PORT, on a server of its
own (polling mode's only one): GET /health (the process is alive), GET /ready (the database, the model and each
MCP server; 503 when the database or the model is down; one check at a time, its report reused for
READY_CACHE_SECONDS) and GET /metrics (host.metrics in Prometheus's text format; a scrape refreshes the database
and model gauges through the same cached check).

/metrics asks for no credentials, like /health and /ready: it holds counts, durations, the model's name and the
names of MCP servers and their tools, never a secret, a chat, a user or a text. Imports the app and leaves only.
"""

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host import metrics
from host.app import App
from host.errors import ConfigError
from host.log import Throttle
from host.telegram.admin_api import admin_routes
from host.telegram.webserver import Limits, WebServer

log = structlog.get_logger("host.telegram")

READY_CACHE_SECONDS = 5.0

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def probe_routes(readiness: Readiness) -> list[Route]:
    """GET /health, /ready and /metrics; `readiness` is called at most once every READY_CACHE_SECONDS."""
    ready_report = _Cached(readiness, READY_CACHE_SECONDS)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(_request: Request) -> Response:
        ok, report = await ready_report()
        return JSONResponse({"status": "ready" if ok else "not ready", **report}, status_code=200 if ok else 503)

    async def scrape(_request: Request) -> Response:
        await ready_report()  # bot_database_up and llm_up as of this scrape (or the last few seconds)
        return Response(metrics.exposition(), media_type=metrics.CONTENT_TYPE)

    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
    ]


class _Cached:
    """`await cached()`: the check's last result while it is younger than `seconds`; callers that arrive
    during a check wait for it instead of starting their own."""

    def __init__(self, check: Readiness, seconds: float) -> None:
        self.check = check
        self.seconds = seconds
        self._lock = anyio.Lock()
        self._result: tuple[bool, dict[str, Any]] | None = None
        self._at = 0.0

    async def __call__(self) -> tuple[bool, dict[str, Any]]:
        async with self._lock:
            if self._result is None or anyio.current_time() - self._at >= self.seconds:
                self._result = await self.check()
                self._at = anyio.current_time()
            return self._result


async def readiness(app: App) -> tuple[bool, dict[str, Any]]:
    """/ready's answer: the service's readiness as JSON, a server's state without its reason (anyone may ask).
    Sets the database and model gauges as it goes."""
    ready = await app.service.readiness()
    metrics.DATABASE_UP.set(1 if ready.database else 0)
    metrics.LLM_UP.set(1 if ready.model else 0)
    servers = {
        server.name: server.state
        if server.running_per_chat is None
        else f"{server.state}; per chat, {server.running_per_chat} running"
        for server in ready.servers
    }
    report = {
        "database": "ok" if ready.database else "unavailable",
        "model": "ok" if ready.model else "unavailable",
        "servers": servers,
    }
    return ready.ready, report


def listen(host: str, port: int, setting: str) -> socket.socket:
    """A listening TCP socket; a ConfigError naming `setting` (like "WEBHOOK_HOST/WEBHOOK_PORT") when it fails."""
    try:
        listener = socket.create_server((host, port), backlog=1024)
    except OSError as error:
        raise ConfigError(f"{setting}: cannot listen on {host}:{port}: {error.strerror}") from None
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return listener


@asynccontextmanager
async def serving_probes(app: App) -> AsyncIterator[None]:
    """/health, /ready and /metrics at METRICS_HOST:METRICS_PORT while inside; nothing when METRICS_PORT is unset."""
    settings = app.settings
    if settings.metrics_port is None:
        yield
        return
    listener = listen(settings.metrics_host, settings.metrics_port, "METRICS_HOST/METRICS_PORT")
    refusals = Throttle()
    web = Starlette(routes=[*probe_routes(lambda: readiness(app)), *admin_routes(app, refusals)])
    server = WebServer(web, Limits(max_connections=64, read_timeout=settings.webhook_read_timeout), refusals)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [listener])
        log.info("metrics_serving", host=settings.metrics_host, port=settings.metrics_port)
        try:
            yield
        finally:
            server.should_exit = True
