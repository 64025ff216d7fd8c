"""Why a call to the model server failed, classified once: whether to try again, after how long, and what to say."""

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai


class Malformed(Exception):
    """A response that parses but cannot be used."""


class TooLarge(Exception):
    """A whole (not streamed) response over the size limit."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed attempt, classified: whether to try again, and what to tell the user and the log."""

    retryable: bool
    kind: str  # "http", "timeout", "connection", "stream_error", "malformed"
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


def classify(exc: Exception) -> Failure:
    if isinstance(exc, openai.APITimeoutError | TimeoutError | httpx2.TimeoutException):
        return Failure(retryable=True, kind="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.HTTPError):
        return Failure(retryable=True, kind="connection")
    if isinstance(exc, TooLarge):
        return Failure(retryable=False, kind="too_large")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in (408, 409, 429) or status >= 500
        return Failure(retryable, "http", status, _retry_after(exc.response.headers), _short(exc.message))
    if isinstance(exc, openai.APIResponseValidationError | ValueError | Malformed):
        return Failure(retryable=False, kind="malformed")
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return Failure(retryable=True, kind="stream_error", detail=_short(exc.message))
    return Failure(retryable=False, kind=type(exc).__name__, detail=_short(str(exc)))


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` as seconds or an HTTP date; None when absent or unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
