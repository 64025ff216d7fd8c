"""ChatQueues: chats run side by side, a chat's messages one at a time in arrival order, and a failing message
does not stop its chat."""

import anyio
import pytest

from host import metrics
from host.service.queues import ChatQueues

pytestmark = pytest.mark.anyio


async def test_one_chat_in_order_and_chats_side_by_side() -> None:
    events: list[str] = []
    release = {key: anyio.Event() for key in ("a1", "b1")}
    b_started, c_ended = anyio.Event(), anyio.Event()

    async def handle(item: str) -> None:
        events.append(f"start {item}")
        if item == "b1":
            b_started.set()
        if item in release:
            await release[item].wait()
        events.append(f"end {item}")
        if item == "c1":
            c_ended.set()

    async with ChatQueues[str](handle) as queues:
        queues.submit("a", "a1")
        queues.submit("a", "a2")
        queues.submit("b", "b1")
        queues.submit("c", "c1")
        with anyio.fail_after(5):
            await b_started.wait()
            await c_ended.wait()
        assert "start a2" not in events  # waits for a1, while b and c go ahead
        release["a1"].set()
        release["b1"].set()
        assert await queues.finish(5)
    assert events.index("end a1") < events.index("start a2")
    assert queues.busy == 0


async def test_a_failing_message_does_not_stop_its_chat() -> None:
    handled: list[int] = []

    async def handle(item: int) -> None:
        if item == 1:
            raise RuntimeError("boom")
        handled.append(item)

    async with ChatQueues[int](handle) as queues:
        for item in (1, 2, 3):
            queues.submit("chat", item)
        assert await queues.finish(5)
    assert handled == [2, 3]


async def test_finish_gives_up_after_the_grace_and_leaving_cancels() -> None:
    cancelled = anyio.Event()

    async def handle(_item: int) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with ChatQueues[int](handle) as queues:
        queues.submit("chat", 1)
        assert not await queues.finish(0.05)
        assert queues.busy == 1
    assert cancelled.is_set()


def queued() -> float:
    return metrics.REGISTRY.get_sample_value("bot_queued_messages") or 0.0


async def test_bot_queued_messages_counts_what_waits_behind_a_turn_until_it_is_handled_or_abandoned() -> None:
    before = queued()
    started, release = anyio.Event(), anyio.Event()
    abandoned: list[int] = []

    async def handle(item: int) -> None:
        started.set()
        if item == 1:
            await release.wait()

    async def abandon(item: int) -> None:
        abandoned.append(item)

    async with ChatQueues[int](handle, abandon) as queues:
        for item in (1, 2, 3):
            queues.submit("chat", item)
        with anyio.fail_after(5):
            await started.wait()
        assert queued() - before == 2  # 1 is being answered, 2 and 3 wait
        release.set()
        assert await queues.finish(5)
        assert queued() == before
        release = anyio.Event()
        started = anyio.Event()
        for item in (1, 4):
            queues.submit("chat", item)
        with anyio.fail_after(5):
            await started.wait()
        assert queued() - before == 1
    assert abandoned == [4] and queued() == before  # leaving cancelled 1 and abandoned 4
