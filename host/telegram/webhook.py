"""The webhook: a small Starlette app that takes updates from Telegram and reports the bot's health, and
`serving_webhook`, which listens, serves it and registers it with setWebhook.

POST <path of TELEGRAM_WEBHOOK_URL>: an update, accepted only with the right X-Telegram-Bot-Api-Secret-Token
(compared in constant time, else 403); a body over MAX_UPDATE_BYTES gets 413 before it is read, one that is not
an update gets 400. GET /health, /ready and /metrics: host.telegram.probes.
"""

import hmac
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import structlog
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import Bot, Update
from telegram.error import TelegramError

from host.app import App
from host.errors import HostError
from host.log import Throttle
from host.redact import redact_clipped
from host.telegram.admin_api import admin_routes
from host.telegram.probes import Readiness, listen, probe_routes, readiness
from host.telegram.webserver import Limits, WebServer, refused

log = structlog.get_logger("host.telegram")

SECRET_HEADER = "x-telegram-bot-api-secret-token"
MAX_UPDATE_BYTES = 1 << 20  # Telegram's updates are a few kilobytes
TELEGRAM_MAX_CONNECTIONS = 100  # the most setWebhook accepts


def webhook_app(
    *,
    path: str,
    secret: str,
    bot: Bot,
    accept: Callable[[Update], None],
    readiness: Readiness,
    refusals: Throttle,
    routes: Sequence[Route] = (),
) -> Starlette:
    """`accept` receives each update the moment it is read (it must not block); `readiness` reports health;
    refused requests are logged through `refusals` (at most one line a minute for each reason)."""
    expected = secret.encode()

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

    return Starlette(routes=[Route(path, receive, methods=["POST"]), *probe_routes(readiness), *routes])


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


@asynccontextmanager
async def serving_webhook(
    app: App, bot: Bot, accept: Callable[[Update], None], *, allowed_updates: list[str]
) -> AsyncIterator[None]:
    """Serve the webhook app, then register it with setWebhook. The webhook stays registered on the way out:
    other replicas may still be serving it."""
    settings = app.settings
    assert settings.telegram_webhook_url is not None and settings.telegram_webhook_secret is not None
    secret = settings.telegram_webhook_secret.get_secret_value()
    path = urlsplit(settings.telegram_webhook_url).path or "/"
    refusals = Throttle()
    web = webhook_app(
        path=path,
        secret=secret,
        bot=bot,
        accept=accept,
        readiness=lambda: readiness(app),
        refusals=refusals,
        routes=admin_routes(app, refusals),
    )
    listener = listen(settings.webhook_host, settings.webhook_port, "WEBHOOK_HOST/WEBHOOK_PORT")
    limits = Limits(max_connections=settings.webhook_max_connections, read_timeout=settings.webhook_read_timeout)
    server = WebServer(web, limits, refusals)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(server.serve, [listener])
        try:
            try:
                await bot.set_webhook(
                    settings.telegram_webhook_url,
                    secret_token=secret,
                    allowed_updates=allowed_updates,
                    max_connections=min(TELEGRAM_MAX_CONNECTIONS, settings.webhook_max_connections),
                )
            except TelegramError as error:
                raise HostError(f"setWebhook for TELEGRAM_WEBHOOK_URL failed: {error}") from None
            log.info("webhook_registered", path=path, port=settings.webhook_port)
            yield
        finally:
            server.should_exit = True
