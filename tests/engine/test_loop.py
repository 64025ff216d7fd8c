"""The engine end to end: a scripted OpenAI-compatible server, our MCP test server behind the registry, and a
real conversation store (SQLite file and PostgreSQL)."""

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from host.engine.events import EngineEvent, ToolFinished, ToolStarted, TurnFinished
from host.engine.llm import ChatModel, ModelSettings, TextDelta
from host.engine.loop import Engine, EngineSettings
from host.errors import ModelUnavailable
from host.mcp.config import parse_servers
from host.mcp.registry import Registry
from host.storage import ConversationStore
from tests.conftest import peer_server
from tests.peers.openai_server import Call, Fail, Reply, ScriptedModelServer, tool_results

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def engine_for(
    model_server: ScriptedModelServer, store_url: str, *, max_tool_steps: int = 8, retry_attempts: int = 2
) -> AsyncIterator[Engine]:
    servers = parse_servers({"mcpServers": {"ours": peer_server()}}, source="test", environ={})
    settings = ModelSettings(
        base_url=model_server.base_url, api_key="test-key", model="scripted", timeout=5, retry_attempts=retry_attempts
    )
    async with (
        ConversationStore.open(store_url) as store,
        Registry(servers) as registry,
        ChatModel(settings, backoff_first=0.01) as model,
    ):
        yield Engine(model, registry, store, EngineSettings(system_prompt="Be brief.", max_tool_steps=max_tool_steps))


async def run_turn(engine: Engine, chat_id: int, text: str) -> list[EngineEvent]:
    with anyio.fail_after(30):
        return [event async for event in engine.turn(chat_id, text, user_id=chat_id)]


def finished(events: list[EngineEvent]) -> TurnFinished:
    last = events[-1]
    assert isinstance(last, TurnFinished)
    return last


async def test_a_streamed_answer_arrives_in_pieces_and_is_remembered(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(Reply(text="Hello there, friend.", chunks=4), Reply(text="You said hi."))
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, chat, "hi")
        pieces = [event.text for event in events if isinstance(event, TextDelta)]
        assert len(pieces) == 4 and "".join(pieces) == "Hello there, friend."
        assert finished(events).text == "Hello there, friend."
        await run_turn(engine, chat, "what did I say?")
    second = model_server.bodies[1]["messages"]
    assert [message["role"] for message in second] == ["system", "user", "assistant", "user"]
    assert second[1]["content"] == "hi" and second[2]["content"] == "Hello there, friend."


async def test_the_system_prompt_carries_the_date_and_the_servers_instructions(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(Reply(text="ok"))
    async with engine_for(model_server, store_url) as engine:
        await run_turn(engine, new_id(), "hi")
    system = model_server.bodies[0]["messages"][0]["content"]
    assert system.startswith("Be brief.") and "Today is " in system
    assert '<server-notes server="ours">\nTest server: use echo to repeat text.\n</server-notes>' in system
    tools = {tool["function"]["name"] for tool in model_server.bodies[0]["tools"]}
    assert {"ours__add", "ours__echo"} <= tools


async def test_a_tool_call_runs_on_the_mcp_server_and_its_result_reaches_the_model(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(
        Reply(tool_calls=(Call("ours__add", {"a": 2, "b": 40}),)),
        lambda body: Reply(text=f"The sum is {tool_results(body)[0]}."),
    )
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, new_id(), "add 2 and 40")
    started = [event for event in events if isinstance(event, ToolStarted)]
    done = [event for event in events if isinstance(event, ToolFinished)]
    assert [(e.server, e.tool, e.arguments) for e in started] == [("ours", "add", {"a": 2, "b": 40})]
    assert [(e.server, e.tool, e.ok) for e in done] == [("ours", "add", True)]
    assert finished(events).text == "The sum is 42." and finished(events).tool_calls == 1


async def test_parallel_tool_calls_run_together_and_return_in_the_order_asked(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(
        Reply(tool_calls=(Call("ours__sleep", {"seconds": 0.5}), Call("ours__echo", {"text": "fast"}))),
        lambda body: Reply(text=" + ".join(tool_results(body))),
    )
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, new_id(), "both")
    done = [event.tool for event in events if isinstance(event, ToolFinished)]
    assert done == ["echo", "sleep"]  # reported as they finish
    assert finished(events).text == "slept 0.5 + fast"  # given back in the order asked
    assistant = model_server.bodies[1]["messages"][-3]
    assert [call["function"]["name"] for call in assistant["tool_calls"]] == ["ours__sleep", "ours__echo"]


async def test_tool_failures_become_messages_the_model_can_react_to(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    calls = Reply(
        tool_calls=(
            Call("ours__fail", {"message": "disk full"}),
            Call("nobody__nothing", {}),
            Call("ours__add", '{"a": 1,'),
        )
    )
    # Malformed streamed arguments make the client ask once more without streaming; the model insists.
    model_server.script(calls, calls, lambda body: Reply(text=json.dumps(tool_results(body))))
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, new_id(), "break things")
    failed, unknown, malformed = json.loads(finished(events).text)
    assert failed.startswith("Error: ") and "disk full" in failed
    assert unknown == "Error: no tool named 'nobody__nothing' is available"
    assert malformed.startswith("Error: the arguments are not a JSON object")
    assert [event.ok for event in events if isinstance(event, ToolFinished)] == [False, False, False]


async def test_the_step_limit_asks_for_an_answer_without_tools(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(
        Reply(tool_calls=(Call("ours__echo", {"text": "1"}),)),
        Reply(tool_calls=(Call("ours__echo", {"text": "2"}),)),
        Reply(text="Enough tools; here is my answer."),
    )
    async with engine_for(model_server, store_url, max_tool_steps=2) as engine:
        events = await run_turn(engine, new_id(), "loop forever")
    assert finished(events).text == "Enough tools; here is my answer."
    assert "tools" in model_server.bodies[1] and "tools" not in model_server.bodies[2]


async def test_an_empty_answer_at_the_step_limit_becomes_a_clear_message(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(Reply(tool_calls=(Call("ours__echo", {"text": "1"}),)), Reply(text=""))
    async with engine_for(model_server, store_url, max_tool_steps=1) as engine:
        events = await run_turn(engine, new_id(), "loop forever")
    assert "allowed number of tool steps" in finished(events).text


async def test_a_turn_stopped_while_tools_run_keeps_every_call_with_a_result(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(Reply(tool_calls=(Call("ours__sleep", {"seconds": 30}),)), Reply(text="fresh start"))
    async with engine_for(model_server, store_url) as engine:
        with anyio.move_on_after(1.5):
            await run_turn(engine, chat, "sleep long")
        await run_turn(engine, chat, "are you back?")
    messages = model_server.bodies[1]["messages"]
    assert [message["role"] for message in messages] == ["system", "user", "assistant", "tool", "user"]
    assert messages[3]["content"] == "Error: the tool call was cancelled before it finished."


async def test_repeated_tool_call_ids_get_their_own_results(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    model_server.script(
        Reply(
            tool_calls=(Call("ours__echo", {"text": "one"}, id="same"), Call("ours__echo", {"text": "two"}, id="same"))
        ),
        lambda body: Reply(text=" ".join(tool_results(body))),
    )
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, new_id(), "twice")
    assert finished(events).text == "one two"
    ids = [call["id"] for call in model_server.bodies[1]["messages"][-3]["tool_calls"]]
    assert len(set(ids)) == 2


async def test_a_message_too_long_for_the_context_is_not_sent(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    long_text = "word " * 9000
    async with engine_for(model_server, store_url) as engine:
        events = await run_turn(engine, new_id(), long_text)
    assert finished(events).refused and "too long" in finished(events).text
    assert not model_server.requests


async def test_a_model_that_stays_down_ends_the_turn_but_keeps_the_message(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(Fail(500, times=2), Reply(text="Back again."))
    async with engine_for(model_server, store_url, retry_attempts=2) as engine:
        with pytest.raises(ModelUnavailable, match="HTTP 500 after 2 attempts"):
            await run_turn(engine, chat, "are you there?")
        await run_turn(engine, chat, "hello?")
    resent = [message["content"] for message in model_server.bodies[-1]["messages"] if message["role"] == "user"]
    assert resent == ["are you there?", "hello?"]


async def test_reset_starts_a_fresh_conversation(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(Reply(text="one"), Reply(text="two"))
    async with engine_for(model_server, store_url) as engine:
        await run_turn(engine, chat, "first")
        await engine.reset(chat)
        await run_turn(engine, chat, "second")
    assert [message["role"] for message in model_server.bodies[1]["messages"]] == ["system", "user"]


async def test_history_survives_a_restart_and_keeps_tool_calls_with_their_results(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int], tmp_path: Path
) -> None:
    chat = new_id()
    model_server.script(
        Reply(tool_calls=(Call("ours__echo", {"text": "remember me"}),)),
        Reply(text="Echoed."),
        Reply(text="Yes."),
    )
    async with engine_for(model_server, store_url) as engine:
        await run_turn(engine, chat, "echo something")
    async with engine_for(model_server, store_url) as engine:  # a restart: new store, registry and model
        await run_turn(engine, chat, "did it work?")
    roles = [message["role"] for message in model_server.bodies[2]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user"]
    assert model_server.bodies[2]["messages"][3]["content"] == "remember me"


async def test_every_turn_ends_with_one_summary_line_however_it_ends(
    model_server: ScriptedModelServer, store_url: str, new_id: Callable[[], int]
) -> None:
    chat = new_id()
    model_server.script(
        Reply(tool_calls=(Call("ours__add", {"a": 2, "b": 3}),), usage=(40, 6)),
        Reply(text="5", usage=(50, 1)),
        Fail(503, times=None),
    )
    with capture_logs() as logs:
        async with engine_for(model_server, store_url, retry_attempts=1) as engine:
            await run_turn(engine, chat, "add 2 and 3")
            with anyio.fail_after(30), pytest.raises(ModelUnavailable):
                await run_turn(engine, chat, "again")
            await run_turn(engine, chat, "word " * 9000)
    lines = [line for line in logs if line["event"] == "turn_finished"]
    assert [line["outcome"] for line in lines] == ["answered", "failed", "refused"]
    answered, failed, refused = lines
    assert answered["chat_id"] == chat and answered["user_id"] == chat and answered["seconds"] > 0
    assert (answered["steps"], answered["tool_calls"], answered["prompt_tokens"], answered["completion_tokens"]) == (
        2,
        1,
        90,
        7,
    )
    assert failed["error"] == "ModelUnavailable" and failed["prompt_tokens"] == 0 and failed["steps"] == 1
    assert refused["tool_calls"] == 0 and refused["steps"] == 0
    assert "add 2 and 3" not in repr(lines)  # never the texts
