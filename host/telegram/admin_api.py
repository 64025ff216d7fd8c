"""The admin HTTP API, served beside the webhook (or, in polling mode, beside /metrics on METRICS_PORT) when
ADMIN_API_TOKEN is set: `Authorization: Bearer <token>`, compared in constant time; 401 without a token, 403 with a
wrong one (refusals logged at most once a minute per reason).

    POST /api/admin/users/{id}/block      {"user_id": 42, "outcome": "blocked" | "already" | "admin"}
    POST /api/admin/users/{id}/unblock    {"user_id": 42, "unblocked": true | false}
    GET  /api/admin/stats                 {"users", "blocked", "active_today", "running_now", "today": {"tokens",
                                          "turns", "llm_calls", "tool_calls", "seconds"}}
    POST /api/admin/reload                {"started": [...], "restarted": [...], "stopped": [...], "kept": [...]}
                                          or 422 {"error": why mcp_servers.json did not load; nothing changed}
    GET  /api/admin/audit?limit=N         {"entries": [{"at", "actor", "action", "subject", "detail"}, ...]}, the
                                          newest N (default 50, at most 500) first; 400 for another limit
    POST /api/admin/broadcast             body {"text": "..."}: 202 {"id": 3, "recipients": 500}, sent in the
                                          background (host.telegram.broadcast); 400 {"error": ...} for a body
                                          that is not such JSON, or an empty text or one over 4096 characters;
                                          413 for a body over 64 KB
    GET  /api/admin/broadcasts/{id}       {"id", "recipients", "pending", "sent", "failed", "skipped", "finished"}
                                          or 404 for an unknown id
"""

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.app import App
from host.errors import ConfigError
from host.log import Throttle
from host.service import BroadcastRefused, parse_user_id
from host.telegram.admin import reload_refusal
from host.telegram.webserver import refused

PREFIX = "/api/admin"
AUDIT_LIMIT, MAX_AUDIT_LIMIT = 50, 500
MAX_BODY_BYTES = 64 * 1024  # a broadcast's JSON: 4096 characters, escaped, fit many times over
TOO_BIG = object()
MAX_ID = 2**63 - 1  # a larger id is no row's (and no database's integer)

Handler = Callable[[Request], Awaitable[Response]]


def admin_routes(app: App, refusals: Throttle) -> list[Route]:
    """The API's routes, or none when ADMIN_API_TOKEN is unset (then every path under it is a 404)."""
    if app.settings.admin_api_token is None:
        return []
    expected = app.settings.admin_api_token.get_secret_value().encode()
    service = app.service

    def guarded(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not given:
                refused(refusals, "admin API without a token", client=request.client.host if request.client else None)
                return JSONResponse({"error": "a bearer token is required"}, 401, {"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(given.strip().encode(), expected):
                refused(
                    refusals, "admin API with a wrong token", client=request.client.host if request.client else None
                )
                return JSONResponse({"error": "wrong token"}, 403)
            return await handler(request)

        return checked

    def bad_id() -> Response:
        return JSONResponse({"error": "not a Telegram user id"}, 400)

    async def block(request: Request) -> Response:
        if (user_id := parse_user_id(request.path_params["user_id"])) is None:
            return bad_id()
        return JSONResponse({"user_id": user_id, "outcome": await service.block(user_id, None)})

    async def unblock(request: Request) -> Response:
        if (user_id := parse_user_id(request.path_params["user_id"])) is None:
            return bad_id()
        return JSONResponse({"user_id": user_id, "unblocked": await service.unblock(user_id, None)})

    async def reload(_request: Request) -> Response:
        try:
            reloaded = await service.reload()
        except ConfigError as error:
            return JSONResponse({"error": reload_refusal(error)}, 422)
        return JSONResponse(asdict(reloaded))

    async def audit(request: Request) -> Response:
        given = request.query_params.get("limit", str(AUDIT_LIMIT))
        if not (given.isascii() and given.isdigit() and len(given) <= 3 and 1 <= int(given) <= MAX_AUDIT_LIMIT):
            return JSONResponse({"error": f"limit must be a whole number from 1 to {MAX_AUDIT_LIMIT}"}, 400)
        entries = await service.audit_log(int(given))
        return JSONResponse(
            {
                "entries": [
                    {
                        "at": entry.at.isoformat(),
                        "actor": entry.actor,
                        "action": entry.action,
                        "subject": entry.subject,
                        "detail": entry.detail,
                    }
                    for entry in entries
                ]
            }
        )

    async def stats(_request: Request) -> Response:
        return JSONResponse(asdict(await service.stats()))

    async def broadcast(request: Request) -> Response:
        body = await _json_body(request)
        if body is TOO_BIG:
            return JSONResponse({"error": f"the body is over {MAX_BODY_BYTES:,} bytes"}, 413)
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            return JSONResponse({"error": 'send a JSON object {"text": "..."}'}, 400)
        started = await service.broadcast(text, None)
        if isinstance(started, BroadcastRefused):
            return JSONResponse({"error": started.reason}, 400)
        return JSONResponse({"id": started.id, "recipients": started.recipients}, 202)

    async def broadcast_progress(request: Request) -> Response:
        broadcast_id: int = request.path_params["broadcast_id"]
        progress = await service.broadcast_progress(broadcast_id) if broadcast_id <= MAX_ID else None
        if progress is None:
            return JSONResponse({"error": "no such broadcast"}, 404)
        return JSONResponse({"id": progress.id, "recipients": progress.recipients, **asdict(progress)})

    return [
        Route(f"{PREFIX}/audit", guarded(audit), methods=["GET"]),
        Route(f"{PREFIX}/stats", guarded(stats), methods=["GET"]),
        Route(f"{PREFIX}/users/{{user_id}}/block", guarded(block), methods=["POST"]),
        Route(f"{PREFIX}/users/{{user_id}}/unblock", guarded(unblock), methods=["POST"]),
        Route(f"{PREFIX}/reload", guarded(reload), methods=["POST"]),
        Route(f"{PREFIX}/broadcast", guarded(broadcast), methods=["POST"]),
        Route(f"{PREFIX}/broadcasts/{{broadcast_id:int}}", guarded(broadcast_progress), methods=["GET"]),
    ]


async def _json_body(request: Request) -> object:
    """The request's JSON, read up to MAX_BODY_BYTES (TOO_BIG past it); None when it is not JSON (or nested too
    deep for the parser)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return TOO_BIG
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None
