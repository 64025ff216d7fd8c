"""The engine's parts that crash recovery and odd input rely on, against a scripted model and a real store
(SQLite file and PostgreSQL): a NUL byte in text is answered, not a database failure; `resume` answers a message
stored before a crash without storing it again."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from host.engine.events import TurnFinished
from host.engine.llm import ChatModel, ModelSettings
from host.engine.loop import Engine, EngineSettings
from host.mcp.config import parse_servers
from host.mcp.registry import Registry
from host.storage import ConversationStore, StoredMessage
from tests.conftest import peer_server
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def engine_for(model_server: ScriptedModelServer, store_url: str, *, tools: bool = True) -> AsyncIterator[Engine]:
    servers = parse_servers({"mcpServers": {"ours": peer_server()} if tools else {}}, source="test", environ={})
    settings = ModelSettings(base_url=model_server.base_url, api_key="k", model="scripted", timeout=5)
    async with ConversationStore.open(store_url) as store, Registry(servers) as registry, ChatModel(settings) as model:
        yield Engine(model, registry, store, EngineSettings(system_prompt="Be brief."))


async def test_nul_bytes_in_text_and_tool_results_get_an_answer(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(
        Reply(tool_calls=(Call("ours__echo", {"text": "x\x00y"}),)),
        lambda body: Reply(text=f"It echoed {tool_results(body)[0]!r}."),
    )
    with anyio.fail_after(30):
        async with engine_for(model_server, store_url) as engine:
            events = [event async for event in engine.turn(chat, "echo a\x00b", user_id=chat, update_id=new_id())]
            history = await engine.store.window(
                await engine.store.current_conversation(chat), max_messages=10, max_tokens=8000
            )
    assert isinstance(events[-1], TurnFinished) and events[-1].text.startswith("It echoed ")
    assert history[0].content == "echo a\ufffdb"  # kept, visibly replaced
    assert "\x00" not in "".join(message.content or "" for message in history)


async def test_resume_answers_a_stored_message_from_its_history_without_storing_it_again(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(lambda body: Reply(text=f"Resumed after {[m['role'] for m in body['messages']]}"))
    calls = [{"id": "c1", "type": "function", "function": {"name": "ours__echo", "arguments": "{}"}}]
    with anyio.fail_after(30):
        async with engine_for(model_server, store_url, tools=False) as engine:
            store = engine.store
            question = StoredMessage("user", "what is 2+2?", None, None, 8)
            conversation = await store.begin_turn(chat, 0, question, chat)
            assert conversation is not None
            stored = await store.window(conversation, max_messages=1, max_tokens=100)
            await store.append(conversation, StoredMessage("assistant", "", calls, None, 8))  # the crashed turn
            await store.append(conversation, StoredMessage("tool", "4", None, "c1", 3))
            events = [event async for event in engine.resume(chat, 0, conversation, stored[0])]
            history = await store.window(conversation, max_messages=10, max_tokens=8000)
    assert isinstance(events[-1], TurnFinished)
    assert events[-1].text == "Resumed after ['system', 'user', 'assistant', 'tool']"  # the tool result kept
    assert [(m.role, m.content) for m in history] == [
        ("user", "what is 2+2?"),
        ("assistant", ""),
        ("tool", "4"),
        ("assistant", events[-1].text),
    ]
