"""ChatQueues: one first-in-first-out queue per conversation (chat and forum topic), each drained by a task of
its own. Different chats are handled at the same time; the messages of one chat one after another, in the order
they arrived, so that a message sent during a turn waits for it instead of being dropped or interleaved.

`submit` is synchronous: the order is fixed the moment an update is read. When the queues are cancelled
(the bot stops), `abandon` is called for each item that was still waiting; bot_queued_messages counts the
items waiting. Imports host.metrics only.
"""

from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType
from typing import Generic, TypeVar

import anyio
import anyio.abc
import structlog

from host import metrics

log = structlog.get_logger("host.service")

T = TypeVar("T")

ABANDON_SECONDS = 3.0  # for all the `abandon` calls of one queue when it is cancelled


class ChatQueues(Generic[T]):
    """`async with ChatQueues(handle) as queues: queues.submit(key, item)`; leaving cancels what still runs
    (call `finish(grace)` first to let it end on its own)."""

    def __init__(
        self, handle: Callable[[T], Awaitable[None]], abandon: Callable[[T], Awaitable[None]] | None = None
    ) -> None:
        self._handle = handle
        self._abandon = abandon
        self._queues: dict[Hashable, deque[T]] = {}
        self._idle = anyio.Event()
        self._idle.set()
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def busy(self) -> int:
        """Conversations with a message being handled or waiting."""
        return len(self._queues)

    async def __aenter__(self) -> "ChatQueues[T]":
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(exc_type, exc, tb)

    def submit(self, key: Hashable, item: T) -> None:
        """Queue an item behind the conversation's earlier ones."""
        assert self._tasks is not None, "use ChatQueues inside `async with`"
        metrics.QUEUED.inc()
        queue = self._queues.get(key)
        if queue is not None:
            queue.append(item)
            return
        self._queues[key] = deque([item])
        self._idle = anyio.Event()
        self._tasks.start_soon(self._drain, key)

    async def finish(self, grace: float) -> bool:
        """Wait up to `grace` seconds for every queue to run empty; True when they did."""
        with anyio.move_on_after(grace):
            await self._idle.wait()
        return not self._queues

    async def _drain(self, key: Hashable) -> None:
        queue = self._queues[key]
        try:
            while queue:
                metrics.QUEUED.dec()  # its turn has come
                try:
                    await self._handle(queue[0])
                except Exception:  # one failing message must not stop its chat, or the bot
                    log.exception("message_handler_failed")
                queue.popleft()
        except anyio.get_cancelled_exc_class():
            queue.popleft()  # the one being handled was told by its handler
            metrics.QUEUED.dec(len(queue))
            if queue and self._abandon is not None:
                with anyio.move_on_after(ABANDON_SECONDS, shield=True):
                    for item in queue:
                        await self._abandon(item)
            raise
        finally:
            del self._queues[key]
            if not self._queues:
                self._idle.set()
