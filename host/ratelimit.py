"""Rate limits on the messages that reach the model: per user and for everyone together, over a sliding window.

`MemoryRateLimiter` keeps its counts in this process (one replica). `RedisRateLimiter` keeps them in Redis, so
several replicas share one budget; it fails open when Redis cannot be reached. `open_rate_limiter` picks one
from REDIS_URL and owns the Redis client. Imports nothing from the host but its errors and metrics.
"""

import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Protocol

import structlog

from host import metrics
from host.errors import ConfigError

if TYPE_CHECKING:  # redis is imported only when REDIS_URL is set (it costs about 20 MB)
    import redis.asyncio

log = structlog.get_logger("host.ratelimit")

SOCKET_TIMEOUT = 2.0  # seconds for Redis to connect or answer before a message is admitted without it


class RateLimiter(Protocol):
    async def admit(self, user_id: int) -> float:
        """0.0 when the message may go ahead (it is counted), else the seconds until it could."""
        ...


class MemoryRateLimiter:
    """At most `user_limit` messages per user and `global_limit` in all within any `window` seconds."""

    def __init__(
        self, user_limit: int, global_limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.user_limit = user_limit
        self.global_limit = global_limit
        self.window = window
        self._clock = clock
        self._users: dict[int, deque[float]] = {}
        self._all: deque[float] = deque()

    async def admit(self, user_id: int) -> float:
        now = self._clock()
        self._forget(self._all, now)
        if not self._all:  # nobody wrote within the window: forget everyone's old times at once
            self._users.clear()
        mine = self._users.setdefault(user_id, deque())
        self._forget(mine, now)
        wait = 0.0
        if len(mine) >= self.user_limit:
            wait = mine[0] + self.window - now
        if len(self._all) >= self.global_limit:
            wait = max(wait, self._all[0] + self.window - now)
        if wait > 0:
            if not mine:
                del self._users[user_id]
            return wait
        mine.append(now)
        self._all.append(now)
        return 0.0

    def _forget(self, stamps: deque[float], now: float) -> None:
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()


# KEYS: the user's sorted set, everyone's. ARGV: user limit, global limit, window (µs), a unique token.
# Scores are the server's TIME in µs, so replicas agree on the clock. Returns 0, or the µs to wait.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[3])
local wait = 0
for i, limit in ipairs({tonumber(ARGV[1]), tonumber(ARGV[2])}) do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return wait end
local member = t[1] .. '.' .. t[2] .. '-' .. ARGV[4]
for i = 1, 2 do
  redis.call('ZADD', KEYS[i], now, member)
  redis.call('PEXPIRE', KEYS[i], math.ceil(window / 1000))
end
return 0
"""


class RedisRateLimiter:
    """The same limits as `MemoryRateLimiter`, counted in Redis sorted sets (`<prefix>user:<id>` and
    `<prefix>all`) so every replica shares them; checked and counted atomically in one round trip.

    Owns only its script, not the client. When Redis fails it logs a warning and admits (fails open)."""

    def __init__(
        self, client: "redis.asyncio.Redis", user_limit: int, global_limit: int, window: float, *, prefix: str
    ) -> None:
        from redis.exceptions import RedisError

        self.user_limit = user_limit
        self.global_limit = global_limit
        self.window = window
        self.prefix = prefix
        self._window_us = round(window * 1_000_000)
        self._script = client.register_script(_ADMIT)
        self._failures = (RedisError, OSError)

    async def admit(self, user_id: int) -> float:
        keys = [f"{self.prefix}user:{user_id}", f"{self.prefix}all"]
        args: list[int | str] = [self.user_limit, self.global_limit, self._window_us, secrets.token_hex(8)]
        try:
            wait_us = await self._script(keys=keys, args=args)
        except self._failures as exc:
            metrics.CACHE_ERRORS.inc()
            log.warning("rate limit store failed, admitting", error=f"{type(exc).__name__}: {exc}")
            return 0.0
        return int(wait_us) / 1_000_000


@asynccontextmanager
async def open_rate_limiter(
    redis_url: str | None,
    *,
    user_limit: int,
    global_limit: int,
    window: float,
    prefix: str = "mcpbot:rl:",
) -> AsyncIterator[RateLimiter]:
    """The memory limiter without a REDIS_URL, else a Redis one on a client this owns and closes on exit.

    A dead or hung Redis stalls `admit` for at most about SOCKET_TIMEOUT (no retries: the message is admitted).
    Raises ConfigError for a malformed REDIS_URL."""
    if redis_url is None:
        yield MemoryRateLimiter(user_limit, global_limit, window)
        return
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    try:
        client = redis.asyncio.from_url(
            redis_url, socket_timeout=SOCKET_TIMEOUT, socket_connect_timeout=SOCKET_TIMEOUT, retry=Retry(NoBackoff(), 0)
        )
    except ValueError as exc:  # the message never holds the URL, so never its password
        raise ConfigError(f"REDIS_URL is malformed: {exc}") from None
    try:
        yield RedisRateLimiter(client, user_limit, global_limit, window, prefix=prefix)
    finally:
        await client.aclose()
