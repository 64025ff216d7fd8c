"""The HTTP requests to the Bot API, counted: every failed call becomes telegram_api_errors_total{method, code},
the code being the HTTP status, or "timeout" or "network" when no answer came. The method is the last part of the
URL (the token before it never reaches a label). Imports PTB and host.metrics only.
"""

from typing import Any

from telegram.error import NetworkError, TimedOut
from telegram.request import HTTPXRequest

from host import metrics


class MeteredRequest(HTTPXRequest):
    """PTB's HTTPX request with the Bot API's failures counted by method and status."""

    async def do_request(self, url: str, method: str, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        name = url.rsplit("/", 1)[-1].split("?", 1)[0]
        try:
            code, payload = await super().do_request(url, method, *args, **kwargs)
        except TimedOut:
            metrics.telegram_error(name, "timeout")
            raise
        except NetworkError:
            metrics.telegram_error(name, "network")
            raise
        if not 200 <= code < 300:
            metrics.telegram_error(name, code)
        return code, payload
