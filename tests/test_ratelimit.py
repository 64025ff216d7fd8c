"""The in-memory rate limiter: per user and global, sliding windows, and how long to wait."""

import pytest

from host.ratelimit import MemoryRateLimiter

pytestmark = pytest.mark.anyio


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
