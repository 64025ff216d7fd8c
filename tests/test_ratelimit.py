"""The rate limiters: per user and global, sliding windows, and how long to wait; in memory and in Redis.

The Redis tests use this machine's Redis (skipped when absent, failed when MCPBOT_REQUIRE_SERVICES=1), each with
its own key prefix. Redis's clock cannot be faked, so tests that wait for the window use windows under a second.
"""

import os
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlparse

import anyio
import pytest
import redis.asyncio
from structlog.testing import capture_logs

from host import metrics
from host.errors import ConfigError
from host.ratelimit import MemoryRateLimiter, RedisRateLimiter, open_rate_limiter
from tests.conftest import free_port

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("MCPBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_user_over_the_limit_waits_for_the_oldest_message_to_leave_the_window() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(user_limit=2, global_limit=100, window=60, clock=clock)
    assert await limiter.admit(1) == 0 and await limiter.admit(1) == 0
    clock.now += 10
    assert await limiter.admit(1) == pytest.approx(50)
    assert await limiter.admit(2) == 0  # other users are not affected
    clock.now += 50
    assert await limiter.admit(1) == 0


async def test_the_global_limit_covers_everyone_and_refusals_are_not_counted() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(user_limit=10, global_limit=3, window=60, clock=clock)
    for user in (1, 2, 3):
        assert await limiter.admit(user) == 0
    assert await limiter.admit(4) == pytest.approx(60)
    clock.now += 60
    assert [await limiter.admit(user) for user in (4, 5, 6, 7)] == [0, 0, 0, pytest.approx(60)]


@pytest.fixture
def redis_url() -> str:
    """This machine's Redis; skips when absent, but fails when MCPBOT_REQUIRE_SERVICES=1 (CI)."""
    where = urlparse(REDIS_URL)
    host, port = where.hostname or "127.0.0.1", where.port or 6379
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        reason = f"Redis is not running on {host}:{port}"
        if os.environ.get("MCPBOT_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}, and MCPBOT_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    return REDIS_URL


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"mcpbot:test:rl:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=f"{prefix}*")]
    if keys:
        await redis_client.delete(*keys)


def limiter(
    client: redis.asyncio.Redis, prefix: str, user_limit: int, global_limit: int, window: float
) -> RedisRateLimiter:
    return RedisRateLimiter(client, user_limit, global_limit, window, prefix=prefix)


async def admitted_after_waiting(limiter: RedisRateLimiter, user_id: int, within: float = 3.0) -> None:
    """Sleep for the wait each refusal names until the message is admitted; fail if that takes over `within` s."""
    with anyio.fail_after(within):
        while True:
            wait = await limiter.admit(user_id)
            if wait == 0:
                return
            await anyio.sleep(wait)


async def test_redis_a_user_over_the_limit_waits_and_others_are_not_affected(
    redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    slow = limiter(redis_client, prefix, user_limit=2, global_limit=100, window=60)
    assert await slow.admit(1) == 0 and await slow.admit(1) == 0
    assert 59 < await slow.admit(1) <= 60
    assert await slow.admit(2) == 0
    quick = limiter(redis_client, prefix + "quick:", user_limit=1, global_limit=100, window=0.5)
    assert await quick.admit(1) == 0
    started = anyio.current_time()
    assert 0 < await quick.admit(1) <= 0.5
    await admitted_after_waiting(quick, 1)
    assert anyio.current_time() - started < 1.0


async def test_redis_the_global_limit_covers_everyone_and_refusals_are_not_counted(
    redis_client: redis.asyncio.Redis, prefix: str
) -> None:
    shared = limiter(redis_client, prefix, user_limit=10, global_limit=3, window=0.5)
    for user in (1, 2, 3):
        assert await shared.admit(user) == 0
    for _ in range(5):
        assert 0 < await shared.admit(4) <= 0.5
    assert await redis_client.zcard(f"{prefix}all") == 3  # the refusals were not counted
    for user in (4, 5, 6):  # each as soon as one of 1, 2 and 3 has left the window
        await admitted_after_waiting(shared, user)
    assert await shared.admit(7) > 0  # 4, 5 and 6 fill the window now
    assert await redis_client.zcard(f"{prefix}all") == 3


async def test_two_replicas_share_one_budget(redis_url: str, prefix: str) -> None:
    async with (
        open_rate_limiter(redis_url, user_limit=2, global_limit=3, window=60, prefix=prefix) as one,
        open_rate_limiter(redis_url, user_limit=2, global_limit=3, window=60, prefix=prefix) as two,
    ):
        assert isinstance(one, RedisRateLimiter) and isinstance(two, RedisRateLimiter)
        assert await one.admit(1) == 0 and await two.admit(1) == 0
        assert await one.admit(1) > 0 and await two.admit(1) > 0
        assert await two.admit(2) == 0
        assert await one.admit(3) > 0 and await two.admit(3) > 0  # three in all, whoever counted them


async def test_redis_keys_expire_with_the_window(redis_client: redis.asyncio.Redis, prefix: str) -> None:
    long = limiter(redis_client, prefix + "long:", user_limit=5, global_limit=5, window=60)
    assert await long.admit(1) == 0
    assert 59_000 < await redis_client.pttl(f"{prefix}long:user:1") <= 60_000
    short = limiter(redis_client, prefix, user_limit=5, global_limit=5, window=0.3)
    assert await short.admit(1) == 0 and await short.admit(2) == 0
    with anyio.fail_after(2):
        while True:
            if not await redis_client.exists(f"{prefix}user:1", f"{prefix}user:2", f"{prefix}all"):
                break
            await anyio.sleep(0.05)


async def test_an_unreachable_redis_admits_everyone_quickly_and_warns_without_the_password() -> None:
    url = f"redis://:hunter2secret@127.0.0.1:{free_port()}/0"
    failures_before = metrics.REGISTRY.get_sample_value("ratelimit_redis_errors_total") or 0.0
    with capture_logs() as logs, anyio.fail_after(5):
        async with open_rate_limiter(url, user_limit=1, global_limit=1, window=60) as dead:
            assert [await dead.admit(1) for _ in range(3)] == [0, 0, 0]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 3 and "hunter2secret" not in repr(logs)
    assert metrics.REGISTRY.get_sample_value("ratelimit_redis_errors_total") == failures_before + 3  # the dashboard


async def test_open_rate_limiter_without_a_url_is_the_memory_one_and_a_bad_url_names_redis_url() -> None:
    async with open_rate_limiter(None, user_limit=1, global_limit=1, window=60) as memory:
        assert isinstance(memory, MemoryRateLimiter)
    for bad in ("http://127.0.0.1:6379", "redis://127.0.0.1:notaport"):
        with pytest.raises(ConfigError, match="REDIS_URL"):
            async with open_rate_limiter(bad, user_limit=1, global_limit=1, window=60):
                pass
