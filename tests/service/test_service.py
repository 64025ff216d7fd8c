"""The service in process: the gate (one claim per update, access, empty text, rate limits, admins), turns
refused before they are stored answered once, one chat's messages answered one after the other through
ChatQueues, and the status values front ends format. A real SQLite store and engine; the model is a scripted
ChatModel in process."""

import json
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from sqlalchemy import update

from host.engine.llm import Completion, ModelEvent, TextDelta
from host.engine.loop import Engine, EngineSettings
from host.mcp.config import load_servers
from host.mcp.registry import Registry
from host.ratelimit import MemoryRateLimiter
from host.service import Access, Budgets, ChatQueues, Refused, Request, Service, TurnFinished
from host.storage import ConversationStore
from host.storage.models import Message, utcnow
from tests.conftest import ROOT, peer_server

pytestmark = pytest.mark.anyio


class ScriptedModel:
    """Answers "answer to <last user text>" after `delay` seconds; records the messages of every request."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[list[ChatCompletionMessageParam]] = []

    async def complete(
        self,
        messages: list[ChatCompletionMessageParam],
        tools: list[ChatCompletionToolParam] | None = None,
        *,
        model: str | None = None,
        temperature: float | None = None,
    ) -> AsyncGenerator[ModelEvent, None]:
        self.requests.append(list(messages))
        await anyio.sleep(self.delay)  # the model's own time to answer, not a synchronisation
        text = f"answer to {messages[-1].get('content')}"
        yield TextDelta(text)
        yield Completion(text=text, reasoning="", tool_calls=(), usage=None, finish_reason="stop")

    async def healthy(self, *, generate: bool = True) -> bool:
        return True


@asynccontextmanager
async def service_for(
    tmp_path: Path,
    model: ScriptedModel,
    *,
    user_limit: int = 100,
    admins: Sequence[int] = (),
    servers: dict[str, Any] | None = None,
    max_context_tokens: int = 8000,
    access: Access | None = None,
    retention_days: int = 0,
    data_dir: Path | None = None,
    budgets: Budgets | None = None,
    audit_tool_calls: bool = False,
) -> AsyncIterator[Service]:
    config = tmp_path / "mcp_servers.json"
    config.write_text(json.dumps({"mcpServers": servers or {}}))
    settings = EngineSettings(system_prompt="Be brief.", max_context_tokens=max_context_tokens, answer_tokens=500)
    with anyio.fail_after(30):
        async with (
            ConversationStore.open(f"sqlite+aiosqlite:///{tmp_path}/bot.db") as store,
            Registry(load_servers(config), backoff_first=30, backoff_cap=30) as registry,
        ):
            engine = Engine(model, registry, store, settings)  # type: ignore[arg-type]
            limiter = MemoryRateLimiter(user_limit, 1000, 60)
            yield Service(
                engine,
                registry,
                store,
                model,
                limiter,
                admins=frozenset(admins),
                access=access,
                retention_days=retention_days,
                data_dir=data_dir,
                budgets=budgets,
                audit_tool_calls=audit_tool_calls,
            )  # type: ignore[arg-type]


async def answer(service: Service, request: Request) -> list[str]:
    return [event.text async for event in service.turn(request) if isinstance(event, TurnFinished)]


async def test_each_update_is_claimed_once_whatever_the_bot_does_with_it(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel()) as service:
        command = Request(chat_id=1, text="help", user_id=1, update_id=10)
        assert await service.admit(command, turn=False) is None
        assert await service.admit(command, turn=False) == Refused("repeated")
        empty = Request(chat_id=1, text="  ", user_id=1, update_id=11)
        assert await service.admit(empty, turn=True) == Refused("empty")
        assert await service.admit(empty, turn=True) == Refused("repeated")
        text = Request(chat_id=1, text="hello", user_id=1, update_id=12)
        assert await service.admit(text, turn=True) is None  # a turn is claimed with its stored message
        assert await answer(service, text) == ["answer to hello"]
        assert await service.admit(text, turn=True) is None
        assert await answer(service, text) == []  # delivered twice: answered once
        assert await service.claim(Request(chat_id=1, update_id=13)) and not await service.claim(
            Request(chat_id=1, update_id=13)
        )


async def test_a_message_that_cannot_fit_the_context_is_refused_once(tmp_path: Path) -> None:
    model = ScriptedModel()
    async with service_for(tmp_path, model, max_context_tokens=1000) as service:
        long = Request(chat_id=2, text="1 " * 3_000, user_id=2, update_id=20)
        [refusal] = await answer(service, long)
        assert refusal.startswith("⚠️ Your message is too long for me")
        assert await answer(service, long) == []
    assert model.requests == []


async def test_the_rate_limit_spares_admins_and_the_terminal(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel(), user_limit=1, admins=[7]) as service:
        assert await service.admit(Request(chat_id=1, text="a", user_id=1, update_id=1), turn=True) is None
        limited = await service.admit(Request(chat_id=1, text="b", user_id=1, update_id=2), turn=True)
        assert limited is not None and limited.reason == "rate_limited" and 1 <= limited.seconds <= 60
        assert await service.admit(Request(chat_id=1, text="c", user_id=1, update_id=2), turn=True) == Refused(
            "repeated"
        )
        for update in (3, 4, 5):
            assert await service.admit(Request(chat_id=7, text="x", user_id=7, update_id=update), turn=True) is None
            assert await service.admit(Request(chat_id=0, text="x"), turn=True) is None
        assert service.is_admin(7) and not service.is_admin(1) and not service.is_admin(None)


async def test_two_messages_in_one_chat_are_answered_one_after_the_other(tmp_path: Path) -> None:
    model = ScriptedModel(delay=0.2)
    answers: list[str] = []
    async with service_for(tmp_path, model) as service:

        async def handle(request: Request) -> None:
            answers.extend(await answer(service, request))

        async with ChatQueues[Request](handle) as queues:
            for text in ("one", "two"):
                queues.submit((3, 0), Request(chat_id=3, text=text, user_id=3))
            with anyio.fail_after(10):
                assert await queues.finish(10)
    assert answers == ["answer to one", "answer to two"]
    roles = [message["role"] for message in model.requests[1]]
    assert roles == ["system", "user", "assistant", "user"]  # the second was asked after the first was answered


async def test_status_values_name_each_server_and_the_reason_it_is_down_redacted(tmp_path: Path) -> None:
    broken = {"command": "/nonexistent/server", "env": {"API_KEY": "sk-secret"}, "args": ["--token=abcdef123456"]}
    async with service_for(tmp_path, ScriptedModel(), servers={"broken": broken}) as service:
        [server] = await service.servers()
        assert (server.name, server.transport, server.connected, server.tools) == ("broken", "stdio", False, 0)
        assert server.state == "failed" and server.reason and "abcdef123456" not in server.reason
        assert await service.tools() == []
        ready = await service.readiness()
        assert ready.ready and ready.servers == (server,)


async def test_a_blocked_user_is_told_once_a_day_and_nothing_they_send_is_stored(tmp_path: Path) -> None:
    model = ScriptedModel()
    async with service_for(tmp_path, model, admins=[7]) as service:
        assert await service.block(5, by=7) == "blocked"
        assert await service.block(5, by=7) == "already"
        assert await service.block(7, by=None) == "admin"  # an admin cannot be locked out
        first = Request(chat_id=5, text="hello", user_id=5, update_id=50)
        assert await service.admit(first, turn=True) == Refused("blocked", notify=True)
        assert await service.admit(first, turn=True) == Refused("repeated")  # the refusal claimed the update
        later = Request(chat_id=5, text="/tools", user_id=5, update_id=51)
        assert await service.admit(later, turn=False) == Refused("blocked", notify=False)  # silent the rest of the day
        assert await service.unblock(5, by=7) and not await service.unblock(5, by=7)
        again = Request(chat_id=5, text="I am back", user_id=5, update_id=52)
        assert await service.admit(again, turn=True) is None
        assert await answer(service, again) == ["answer to I am back"]
        history = await service.store.window(
            await service.store.current_conversation(5), max_messages=10, max_tokens=1000
        )
    assert [message.content for message in history] == ["I am back", "answer to I am back"]  # "hello" never stored
    assert len(model.requests) == 1


async def test_the_access_lists_admit_their_users_anywhere_and_anyone_in_their_chats(tmp_path: Path) -> None:
    access = Access(users=frozenset({1}), chats=frozenset({-100}))
    async with service_for(tmp_path, ScriptedModel(), admins=[9], access=access) as service:

        async def verdict(user: int, chat: int, update: int) -> Refused | None:
            return await service.admit(Request(chat_id=chat, text="hi", user_id=user, update_id=update), turn=True)

        assert await verdict(1, 1, 1) is None  # a listed user in their private chat
        assert await verdict(1, -200, 2) is None  # and in any group
        assert await verdict(2, -100, 3) is None  # anyone in a listed group
        assert await verdict(2, 2, 4) == Refused("not_allowed", notify=True)
        assert await verdict(2, -200, 5) == Refused("not_allowed", notify=False)
        assert await verdict(9, 9, 6) is None  # admins always
        assert await service.admit(Request(chat_id=0, text="hi"), turn=True) is None  # the operator at a terminal


async def test_the_chore_forgets_messages_past_the_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    async with service_for(tmp_path, ScriptedModel(), retention_days=30) as service:
        request = Request(chat_id=3, text="remember me", user_id=3, update_id=30)
        assert await answer(service, request) == ["answer to remember me"]
        assert await service.forget_old_once() is True
        conversation = await service.store.current_conversation(3)
        assert len(await service.store.window(conversation, max_messages=10, max_tokens=1000)) == 2  # both recent
        async with service.store.engine.begin() as connection:
            await connection.execute(update(Message).values(created_at=utcnow() - timedelta(days=31)))
        assert await service.forget_old_once() is True
        assert await service.store.window(conversation, max_messages=10, max_tokens=1000) == []


async def test_forget_deletes_the_chats_folders_inside_data_dir_only(tmp_path: Path) -> None:
    data, outside, elsewhere = tmp_path / "data", tmp_path / "outside", tmp_path / "elsewhere"
    (data / "linked").mkdir(parents=True)
    elsewhere.mkdir()
    (data / "linked" / "5").symlink_to(elsewhere)  # a folder inside DATA_DIR that leads out of it
    per_chat = {**peer_server(), "scope": "chat", "env": {"PYTHONPATH": str(ROOT)}}  # runs from its chat's folder
    servers = {
        "inside": {**per_chat, "cwd": f"{data}/inside/${{CHAT_ID}}"},
        "outside": {**per_chat, "cwd": f"{outside}/${{CHAT_ID}}"},
        "linked": {**per_chat, "cwd": f"{data}/linked/${{CHAT_ID}}"},
    }
    async with service_for(tmp_path, ScriptedModel(), servers=servers, data_dir=data) as service:
        for name in servers:
            await service.registry.call_server_tool(name, "pid", {}, 5)
        forgotten = await service.forget(5)
        assert service.registry.running_instances("inside") == 0
    assert (forgotten.messages, forgotten.folders) == (0, 1)
    assert not (data / "inside" / "5").exists()
    assert (outside / "5").is_dir() and elsewhere.is_dir() and (data / "linked" / "5").is_symlink()
