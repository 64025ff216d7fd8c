"""The engine holds a broken or hostile model to its limits (issue 9, items 11-14): tool calls per step and per
turn, argument sizes, answers cut at a visible note, and a message too long for the context answered without a
request. A scripted OpenAI-compatible server, our MCP test server behind the registry, and a real store."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from host.engine.events import EngineEvent, ToolFinished, ToolStarted, TurnFinished
from host.engine.llm import ChatModel, ModelSettings, TextDelta
from host.engine.loop import Engine, EngineSettings
from host.mcp.config import parse_servers
from host.mcp.registry import Registry
from host.storage import ConversationStore
from tests.conftest import peer_server
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results

pytestmark = pytest.mark.anyio


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """These limits do not depend on the store: one SQLite file keeps the tests quick."""
    return f"sqlite+aiosqlite:///{tmp_path}/mcpbot.db"


@asynccontextmanager
async def engine_for(
    model_server: ScriptedModelServer,
    store_url: str,
    model: dict[str, Any] | None = None,
    tools: bool = True,
    **limits: Any,
) -> AsyncIterator[Engine]:
    config = {"ours": peer_server()} if tools else {}
    servers = parse_servers({"mcpServers": config}, source="test", environ={})
    settings = ModelSettings(
        base_url=model_server.base_url, api_key="k", model="scripted", timeout=10, retry_attempts=1, **(model or {})
    )
    async with (
        ConversationStore.open(store_url) as store,
        Registry(servers) as registry,
        ChatModel(settings) as chat_model,
    ):
        yield Engine(chat_model, registry, store, EngineSettings(system_prompt="Be brief.", **limits))


async def run_turn(engine: Engine, chat_id: int, text: str, **options: Any) -> list[EngineEvent]:
    with anyio.fail_after(60):
        return [event async for event in engine.turn(chat_id, text, user_id=chat_id, **options)]


def finished(events: list[EngineEvent]) -> TurnFinished:
    last = events[-1]
    assert isinstance(last, TurnFinished)
    return last


def assistant_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [call for m in body["messages"] if m["role"] == "assistant" for call in m.get("tool_calls") or []]


async def test_at_most_the_step_limit_of_calls_run_and_every_recorded_call_has_a_result(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    flood = Reply(tool_calls=tuple(Call("ours__echo", {"text": f"n{k}"}) for k in range(2_000)), chunks=1)
    model_server.script(flood, lambda body: Reply(text=f"{len(tool_results(body))} results"), Reply(text="ok"))
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, chat, "flood")
        await run_turn(engine, chat, "again")  # the stored history must be valid for the next request
    assert len([e for e in events if isinstance(e, ToolStarted)]) == 16
    assert len([e for e in events if isinstance(e, ToolFinished)]) == 16
    assert finished(events).tool_calls == 16
    results = tool_results(model_server.bodies[1])
    assert results[:16] == [f"n{k}" for k in range(16)]
    assert len(results) == 32  # the rest of the model's 2,000 are not kept on record
    assert all("asked for 2000 tool calls at once, and at most 16 run in one step" in r for r in results[16:])
    history = model_server.bodies[2]["messages"]
    ids = [call["id"] for call in assistant_calls(model_server.bodies[2])]
    answered = [m["tool_call_id"] for m in history if m["role"] == "tool"]
    assert ids == answered and len(ids) == 32


async def test_the_turn_limit_refuses_calls_in_later_steps(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    def three(step: int) -> Reply:
        return Reply(tool_calls=tuple(Call("ours__echo", {"text": f"{step}.{k}"}) for k in range(3)))

    model_server.script(three(1), three(2), lambda body: Reply(text=json.dumps(tool_results(body))))
    async with engine_for(model_server, store_url, max_tool_calls_per_step=3, max_tool_calls_per_turn=5) as engine:
        events = await run_turn(engine, new_id(), "many")
    second = json.loads(finished(events).text)
    assert second[:2] == ["2.0", "2.1"]
    assert "this turn has used all of its 5 tool calls" in second[2]
    assert finished(events).tool_calls == 5


async def test_an_argument_over_the_byte_limit_is_refused_and_never_stored_or_sent_back_whole(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(
        Reply(tool_calls=(Call("ours__echo", {"text": "x" * 200_000}), Call("ours__echo", {"text": "small"}))),
        lambda body: Reply(text=" | ".join(tool_results(body))),
        Reply(text="fine"),
    )
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, chat, "write a lot")
        await run_turn(engine, chat, "and now?")
    refusal, small = finished(events).text.split(" | ")
    assert refusal.startswith("Error: not run: its arguments are 200,012 bytes, over the limit of 65,536.")
    assert small == "small"
    assert [e.ok for e in events if isinstance(e, ToolFinished)] == [False, True]
    for body in model_server.bodies[1:]:  # sent back right after, and from the store in the next turn
        assert len(json.dumps(body)) < 10_000  # the 200 KB argument is never in it
        assert json.loads(assistant_calls(body)[0]["function"]["arguments"]) == {
            "omitted": "200012 bytes of arguments, not run"
        }


async def test_a_call_cut_off_by_the_response_limit_is_refused_and_not_asked_again(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(
        Reply(tool_calls=(Call("ours__echo", {"text": "y" * 1_000_000}),)),
        lambda body: Reply(text=tool_results(body)[0]),
    )
    async with engine_for(model_server, store_url, model={"max_response_bytes": 100_000}) as engine:
        events = await run_turn(engine, new_id(), "huge")
    assert "cut off there" in finished(events).text
    assert len(model_server.requests) == 2  # no repeat without streaming: that would read it all
    assert len(json.dumps(model_server.bodies[1])) < 5_000


async def test_a_long_answer_is_cut_with_a_note_and_stored_cut(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(Reply(text="word " * 20_000, chunks=40), Reply(text="ok"))
    async with engine_for(model_server, store_url, tools=False, max_answer_chars=1_000) as engine:
        events = await run_turn(engine, chat, "talk")
        await run_turn(engine, chat, "more")
    text = finished(events).text
    assert text.endswith("\n\n… (answer cut at 1,000 characters)") and text.startswith("word word")
    assert sum(len(e.text) for e in events if isinstance(e, TextDelta)) == 1_000  # the preview saw no more
    stored = [m["content"] for m in model_server.bodies[1]["messages"] if m["role"] == "assistant"]
    assert stored == [text]


async def test_a_message_that_cannot_fit_the_context_is_answered_without_a_request(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat, update = new_id(), new_id()
    model_server.script(Reply(text="short one answered"))
    async with engine_for(
        model_server, store_url, tools=False, max_context_tokens=3_000, answer_tokens=1_000
    ) as engine:
        events = await run_turn(engine, chat, "1 " * 3_000, update_id=update)
        assert not model_server.requests
        await run_turn(engine, chat, "a short one")
    refusal = finished(events)
    assert refusal.refused and refusal.tool_calls == 0
    assert refusal.text.startswith("⚠️ Your message is too long for me: about 6,004 tokens, and at most ")
    users = [m["content"] for m in model_server.bodies[0]["messages"] if m["role"] == "user"]
    assert users == ["a short one"]  # the long one was not stored


async def test_a_context_filled_by_the_prompt_says_so(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    async with engine_for(
        model_server, store_url, tools=False, max_context_tokens=1_000, answer_tokens=1_000
    ) as engine:
        events = await run_turn(engine, new_id(), "hi")
    assert finished(events).refused and "instructions and tools fill my whole context" in finished(events).text
    assert not model_server.requests
