"""The webhook: a small Starlette app that takes updates from Telegram and reports the bot's health.

POST <path of TELEGRAM_WEBHOOK_URL>: an update, accepted only with the right X-Telegram-Bot-Api-Secret-Token
(compared in constant time; anything else gets 403 and is not processed). GET /health: the process is alive.
GET /ready: the database, the model and each MCP server, 503 when the database or the model is down.
"""

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from telegram import Bot, Update

log = structlog.get_logger("host.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_UPDATE_BYTES = 1 << 20  # Telegram's updates are a few kilobytes


def webhook_app(
    *,
    path: str,
    secret: str,
    bot: Bot,
    accept: Callable[[Update], None],
    readiness: Callable[[], Awaitable[tuple[bool, dict[str, Any]]]],
) -> Starlette:
    """`accept` receives each update the moment it is read (it must not block); `readiness` reports health."""
    expected = secret.encode()

    async def receive(request: Request) -> Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            client = request.client.host if request.client else None
            log.warning("webhook_refused", reason="wrong secret token", client=client)
            return Response(status_code=403)
        body = await request.body()
        if len(body) > MAX_UPDATE_BYTES:
            return Response(status_code=413)
        try:
            data = json.loads(body)
            update = Update.de_json(data, bot)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            log.warning("webhook_bad_update", error=str(error)[:200])
            return Response(status_code=400)
        accept(update)
        return Response(status_code=200)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(_request: Request) -> Response:
        ok, report = await readiness()
        return JSONResponse({"status": "ready" if ok else "not ready", **report}, status_code=200 if ok else 503)

    return Starlette(
        routes=[
            Route(path, receive, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
        ]
    )
