"""Usage and budgets in the service: each answered turn's tokens (our estimate when the model server sends no
usage), calls and time are added to its user's day; a user over USER_DAILY_TOKEN_BUDGET, or anyone when
DAILY_TOKEN_BUDGET is spent, is refused before anything is stored and told when it resets; admins and the terminal
have no budget; /stats sums the day; the retention chore and /forget delete usage rows. A real SQLite store."""

from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select, update
from structlog.testing import capture_logs

from host.engine.llm import Completion, ModelEvent, ToolCall, Usage
from host.errors import ModelUnavailable, StorageError
from host.service import Budgets, Request, Service, Started
from host.service.usage import duration, seconds_to_reset, today
from host.storage.models import AuditEntry, Broadcast, Message, UsageDay, User, utcnow
from host.storage.usage import Spent
from tests.service.test_service import ScriptedModel, answer, service_for

pytestmark = pytest.mark.anyio


async def stored_messages(service: Service) -> int:
    async with service.store.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(Message)) or 0)


async def test_a_turn_is_counted_by_estimate_and_a_user_over_budget_is_told_when_it_resets(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel(), budgets=Budgets(per_user=50), admins=[9]) as service:
        first = Request(chat_id=1, text="hello there", user_id=1, update_id=1)
        assert await service.admit(first, turn=True) is None
        assert await answer(service, first) == ["answer to hello there"]
        used = await service.usage_of(1)
        assert used.spent.turns == 1 and used.spent.llm_calls == 1 and used.spent.tool_calls == 0
        assert used.spent.tokens > 10  # the system prompt, the message and the answer, by our count
        await service.usage.record(1, Spent(tokens=50))  # spent the rest of the day's budget
        second = Request(chat_id=1, text="one more", user_id=1, update_id=2)
        refusal = await service.admit(second, turn=True)
        assert refusal is not None and refusal.reason == "over_budget" and refusal.budget is not None
        assert refusal.budget.whose == "yours" and 0 < refusal.seconds <= 86400
        assert "50 tokens for today. It resets at 00:00 UTC, in " in refusal.budget.text
        assert await stored_messages(service) == 2  # the refused message was not stored
        assert await service.admit(Request(chat_id=9, text="hi", user_id=9), turn=True) is None  # an admin
        assert await service.admit(Request(chat_id=0, text="hi"), turn=True) is None  # the terminal
        assert await service.admit(Request(chat_id=1, text="/usage", user_id=1, update_id=3), turn=False) is None
        assert "Your daily budget is 50 tokens: 0 left." in (await service.usage_of(1)).text
        assert "There is no daily budget." in (await service.usage_of(9)).text  # admins have none


async def test_the_global_budget_stops_everyone_and_stats_sum_the_day(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel(), budgets=Budgets(everyone=100)) as service:
        await service.usage.record(1, Spent(tokens=60, turns=2, llm_calls=3, tool_calls=1, seconds=3.0))
        await service.usage.record(2, Spent(tokens=40, turns=1, llm_calls=1, seconds=1.5))
        refusal = await service.admit(Request(chat_id=3, text="me too", user_id=3, update_id=1), turn=True)
        assert refusal is not None and refusal.budget is not None and refusal.budget.whose == "everyone's"
        assert refusal.budget.text.startswith("⏳ Everyone together has used the bot's 100 tokens for today.")
        await service.block(5, by=None)
        stats = await service.stats()
    assert (stats.today.tokens, stats.today.turns, stats.today.llm_calls, stats.today.tool_calls) == (100, 3, 4, 1)
    assert stats.active_today == 2 and stats.blocked == 1 and stats.running_now == 0
    assert "Average response time: 1.5 s" in stats.text and "Tokens: 100" in stats.text


async def test_old_usage_rows_are_purged_and_forget_deletes_the_users(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel(), retention_days=30) as service:
        old_day = (datetime.now(UTC) - timedelta(days=31)).date().isoformat()
        await service.store.usage.add(1, old_day, Spent(tokens=5, turns=1))
        await service.usage.record(1, Spent(tokens=7, turns=1))
        await service.usage.record(2, Spent(tokens=9, turns=1))
        long_ago = datetime.now(UTC) - timedelta(days=31)
        await service.store.audit.record(1, "tool_call", server="s", tool="old")
        await service.store.audit.record(9, "block", 1)  # an admin's action is kept
        started = await service.broadcast("old news", by=None)
        assert isinstance(started, Started)
        async with service.store.engine.begin() as connection:
            await connection.execute(update(AuditEntry).values(at=long_ago))
            await connection.execute(update(Broadcast).values(finished_at=long_ago))
        assert await service.forget_old_once() is True
        assert [entry.action for entry in await service.store.audit.recent()] == ["broadcast", "block"]
        assert await service.broadcast_progress(started.id) is None
        await service.forget(2)
        async with service.store.engine.connect() as connection:
            rows = (await connection.execute(select(UsageDay.user_id, UsageDay.day, UsageDay.tokens))).all()
    assert [tuple(row) for row in rows] == [(1, today(), 7)]


async def test_a_database_that_fails_to_record_usage_costs_only_a_warning(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel()) as service:
        async with service.store.engine.begin() as connection:
            await connection.exec_driver_sql("DROP TABLE usage_days")
        request = Request(chat_id=1, text="still answered", user_id=1, update_id=1)
        assert await answer(service, request) == ["answer to still answered"]
        with pytest.raises(StorageError, match="could not read the usage"):
            await service.usage_of(1)


async def test_blocks_and_unblocks_are_audited_with_who_and_whom(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel()) as service:
        await service.block(4, by=9)
        await service.block(4, by=9)  # blocked already: nothing happened, nothing audited
        await service.unblock(4, by=9)
        entries = await service.store.audit.recent()
    assert [(entry.action, entry.actor, entry.subject) for entry in entries] == [("unblock", 9, 4), ("block", 9, 4)]


def test_the_reset_is_counted_to_midnight_utc() -> None:
    assert seconds_to_reset(datetime(2026, 12, 4, 23, 30, tzinfo=UTC)) == 1800
    assert duration(1800) == "30 min" and duration(3 * 3600 + 120) == "3 h 2 min" and duration(5) == "1 min"


class CallsThenFails(ScriptedModel):
    """Asks for a tool (reporting 1,000 + 50 tokens), then stops answering: the turn fails after spending."""

    async def complete(self, messages: Any, tools: Any = None, **_: Any) -> AsyncGenerator[ModelEvent, None]:
        self.requests.append(list(messages))
        if len(self.requests) > 1:
            raise ModelUnavailable("the model stopped answering")
        call = ToolCall(id="call_1", name="nowhere__tool", arguments="{}")
        yield Completion(text="", reasoning="", tool_calls=(call,), usage=Usage(1000, 50), finish_reason="tool_calls")


async def test_a_turn_that_fails_after_calling_the_model_still_spends_the_budget(tmp_path: Path) -> None:
    async with service_for(tmp_path, CallsThenFails(), budgets=Budgets(per_user=500)) as service:
        request = Request(chat_id=1, text="spend and fail", user_id=1, update_id=1)
        assert await service.admit(request, turn=True) is None
        with pytest.raises(ModelUnavailable):
            await answer(service, request)
        spent = (await service.usage_of(1)).spent
        assert (spent.tokens, spent.llm_calls, spent.tool_calls, spent.turns) == (1050, 1, 1, 0)
        refusal = await service.admit(Request(chat_id=1, text="again", user_id=1, update_id=2), turn=True)
        assert refusal is not None and refusal.reason == "over_budget"


async def test_a_command_in_private_brings_a_user_who_blocked_the_bot_back_into_broadcasts(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel()) as service:
        async with service.store.engine.begin() as connection:
            await connection.execute(insert(User).values(id=5, first_seen=utcnow(), unreachable_since=utcnow()))
        group = Request(chat_id=-100, text="help", user_id=5, update_id=1)
        assert await service.admit(group, turn=False) is None
        assert (await service.broadcast("hi", by=None)) == Started(1, 0)  # a group command says nothing of them
        assert await service.admit(Request(chat_id=5, text="start", user_id=5, update_id=2), turn=False) is None
        assert (await service.broadcast("hi again", by=None)) == Started(2, 1)
        async with service.store.engine.begin() as connection:
            await connection.exec_driver_sql("ALTER TABLE users RENAME TO users_away")
        with capture_logs() as logs:
            assert await service.admit(Request(chat_id=5, text="start", user_id=5, update_id=3), turn=False) is None
    assert [entry["event"] for entry in logs] == ["reachability_not_recorded"]
