"""The bot's Prometheus metrics, defined once: every layer records into these, `exposition()` renders them for
GET /metrics. A leaf: imports prometheus-client only.

The metrics live in a CollectorRegistry of their own, not prometheus-client's global one: /metrics shows the bot's
metrics and the process_*/python_* collectors, never what a library registers globally, and a test can read
exactly what the bot exported. It is one registry per process (a process is one bot): recording needs no object
passed through every layer. Labels are bounded: no chat or user ids, server names from mcp_servers.json, tool
names only from a server's listing (else "other"), Bot API method names from our own calls.
"""

import re
import time
from collections import OrderedDict

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: a timestamp per label set that no panel or alert uses
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
PlatformCollector(registry=REGISTRY)  # python_info
GCCollector(registry=REGISTRY)  # python_gc_*

CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"
ACTIVE_USER_SECONDS = 300.0  # a user counts as active for this long after their last message
_ACTIVE_USERS_CAP = 100_000  # users remembered at most (the oldest are forgotten first)
_LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
_TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_METHOD = re.compile(r"[A-Za-z]{1,40}")

MESSAGES = Counter(
    "bot_messages",
    "Messages for the model, by outcome (answered, refused, failed) and sender (admin, user)",
    ["status", "user_type"],
    registry=REGISTRY,
)
ACTIVE_SESSIONS = Gauge("bot_active_sessions", "Turns being answered now (one per chat at most)", registry=REGISTRY)
ACTIVE_USERS = Gauge(
    "bot_active_users", f"Distinct users who sent a message in the last {ACTIVE_USER_SECONDS:g} s", registry=REGISTRY
)
QUEUED = Gauge(
    "bot_queued_messages", "Messages waiting for their chat's earlier ones to be answered", registry=REGISTRY
)
LLM_DURATION = Histogram(
    "llm_request_duration_seconds",
    "One request to the model server, from sending it to the end of the answer, by outcome",
    ["model", "status"],
    buckets=_LLM_BUCKETS,
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "llm_tokens", "Tokens the model server reported, by kind (prompt, completion)", ["model", "kind"], registry=REGISTRY
)
LLM_UP = Gauge("llm_up", "1 when the model server answered the last check (at each scrape)", registry=REGISTRY)
TOOL_CALLS = Counter(
    "mcp_tool_calls",
    "Tool calls by server, tool and outcome (ok, error, unavailable, unknown)",
    ["mcp_name", "tool_name", "status"],
    registry=REGISTRY,
)
TOOL_DURATION = Histogram(
    "mcp_tool_call_duration_seconds",
    "How long a tool call took, by server and tool",
    ["mcp_name", "tool_name"],
    buckets=_TOOL_BUCKETS,
    registry=REGISTRY,
)
MCP_SERVER_UP = Gauge(
    "mcp_server_up", "1 while the server (its shared or listing instance) is connected", ["mcp_name"], registry=REGISTRY
)
TELEGRAM_ERRORS = Counter(
    "telegram_api_errors",
    "Bot API calls that failed, by method and HTTP status (or timeout, network)",
    ["method", "code"],
    registry=REGISTRY,
)
DATABASE_UP = Gauge(
    "bot_database_up", "1 when the database answered the last check (at each scrape)", registry=REGISTRY
)
STORAGE_ERRORS = Counter("bot_storage_errors", "Turns that failed because the database failed", registry=REGISTRY)
CACHE_ERRORS = Counter(
    "ratelimit_redis_errors", "Rate-limit checks Redis did not answer (the message was let through)", registry=REGISTRY
)


class _ActiveUsers:
    """Who sent a message lately, for bot_active_users: ids are kept in memory only, never as labels."""

    def __init__(self) -> None:
        self._seen: OrderedDict[int, float] = OrderedDict()

    def saw(self, user_id: int) -> None:
        self._seen[user_id] = time.monotonic()
        self._seen.move_to_end(user_id)
        while len(self._seen) > _ACTIVE_USERS_CAP:
            self._seen.popitem(last=False)

    def count(self) -> int:
        horizon = time.monotonic() - ACTIVE_USER_SECONDS
        while self._seen and next(iter(self._seen.values())) < horizon:
            self._seen.popitem(last=False)
        return len(self._seen)


_active_users = _ActiveUsers()
ACTIVE_USERS.set_function(_active_users.count)


def message(status: str, *, admin: bool, user_id: int | None) -> None:
    """A message for the model ended: answered, refused (rate limit, empty, too long) or failed."""
    MESSAGES.labels(status=status, user_type="admin" if admin else "user").inc()
    if user_id is not None:
        _active_users.saw(user_id)


def llm_request(model: str, status: str, seconds: float) -> None:
    LLM_DURATION.labels(model=model, status=status).observe(seconds)


def llm_tokens(model: str, *, prompt: int, completion: int) -> None:
    LLM_TOKENS.labels(model=model, kind="prompt").inc(max(prompt, 0))
    LLM_TOKENS.labels(model=model, kind="completion").inc(max(completion, 0))


def tool_call(server: str, tool: str, status: str, seconds: float | None = None) -> None:
    TOOL_CALLS.labels(mcp_name=server, tool_name=tool, status=status).inc()
    if seconds is not None:
        TOOL_DURATION.labels(mcp_name=server, tool_name=tool).observe(seconds)


def server_up(server: str, up: bool) -> None:
    MCP_SERVER_UP.labels(mcp_name=server).set(1 if up else 0)


def telegram_error(method: str, code: int | str) -> None:
    """A failed Bot API call; `method` is the last part of the URL (ours: a fixed set), anything odd is "other"."""
    TELEGRAM_ERRORS.labels(method=method if _METHOD.fullmatch(method) else OTHER, code=str(code)).inc()


def exposition() -> bytes:
    """Every metric in the text format (CONTENT_TYPE)."""
    return generate_latest(REGISTRY)
