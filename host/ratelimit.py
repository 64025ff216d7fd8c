"""Rate limits on the messages that reach the model: per user and for everyone together, over a sliding window.

`MemoryRateLimiter` keeps its counts in this process (one replica). Imports nothing from the host.
"""

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol


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
