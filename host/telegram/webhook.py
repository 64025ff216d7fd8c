"""The webhook: a small Starlette app that takes updates from Telegram and reports the bot's health.

POST <path of TELEGRAM_WEBHOOK_URL>: an update, accepted only with the right X-Telegram-Bot-Api-Secret-Token
(compared in constant time, else 403); a body over MAX_UPDATE_BYTES gets 413 before it is read, one that is not
an update gets 400. GET /health: the process is alive. GET /ready: the database, the model and each MCP server,
503 when the database or the model is down; one check at a time, its report reused for READY_CACHE_SECONDS.
"""

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Bot, Update

from host.log import Throttle
from host.redact import redact_clipped
from host.telegram.webserver import refused

SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_UPDATE_BYTES = 1 << 20  # Telegram's updates are a few kilobytes
READY_CACHE_SECONDS = 5.0

Readiness = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


def webhook_app(
    *,
    path: str,
    secret: str,
    bot: Bot,
    accept: Callable[[Update], None],
    readiness: Readiness,
    refusals: Throttle,
) -> Starlette:
    """`accept` receives each update the moment it is read (it must not block); `readiness` reports health;
    refused requests are logged through `refusals` (at most one line a minute for each reason)."""
    expected = secret.encode()
    ready_report = _Cached(readiness, READY_CACHE_SECONDS)

    async def receive(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            refused(refusals, "wrong secret token", client=request.client.host if request.client else None)
            return _closing(403)
        try:
            body = await _body(request, MAX_UPDATE_BYTES)
        except ClientDisconnect:  # cut off while sending (too slow): nobody is left to answer
            return _closing(400)
        if body is None:
            refused(refusals, f"update over {MAX_UPDATE_BYTES} bytes")
            return _closing(413)
        try:
            update = Update.de_json(json.loads(body), bot)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
            refused(refusals, "not an update", error=redact_clipped(f"{type(error).__name__}: {error}", 200))
            return Response(status_code=400)
        accept(update)
        return Response(status_code=200)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(_request: Request) -> Response:
        ok, report = await ready_report()
        return JSONResponse({"status": "ready" if ok else "not ready", **report}, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route(path, receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
        ]
    )


async def _body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None when it is longer than `limit`: a declared Content-Length is checked before
    anything is read, a chunked body is read only up to the limit."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _closing(status: int) -> Response:
    """A refusal that also ends the connection (an unread body is not waited for)."""
    return Response(status_code=status, headers={"Connection": "close"})


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
