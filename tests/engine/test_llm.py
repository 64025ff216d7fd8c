"""ChatModel against a real HTTP server speaking the OpenAI chat-completions protocol, scripted per test."""

import json
from typing import Any

import anyio
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from structlog.testing import capture_logs

from host.engine.llm import (
    ChatModel,
    Completion,
    ModelEvent,
    ModelSettings,
    ModelUnavailable,
    ReasoningDelta,
    TextDelta,
)
from tests.conftest import free_port
from tests.peers.openai_server import Call, Fail, Hang, Reply, ScriptedModelServer, ToolCallStyle, tool_results

pytestmark = pytest.mark.anyio

API_KEY = "sk-test-secret-key"
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What time is it?"},
]
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "time_now",
            "description": "The current time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "files_read",
            "parameters": {"type": "object", "properties": {"path": {"type": "string"}}},
        },
    },
]


def settings(base_url: str, **overrides: Any) -> ModelSettings:
    values: dict[str, Any] = {"base_url": base_url, "api_key": API_KEY, "model": "scripted-model", "timeout": 5.0}
    return ModelSettings(**(values | overrides))


def model(base_url: str, **overrides: Any) -> ChatModel:
    return ChatModel(settings(base_url, **overrides), backoff_first=0.01)


async def turn(
    chat: ChatModel,
    messages: list[ChatCompletionMessageParam] = QUESTION,
    tools: list[ChatCompletionToolParam] | None = None,
    **kwargs: Any,
) -> tuple[list[ModelEvent], Completion]:
    """All events of one turn, checking that exactly one Completion comes, and comes last."""
    events: list[ModelEvent] = []
    with anyio.fail_after(10):
        async for event in chat.complete(messages, tools, **kwargs):
            events.append(event)
    completions = [event for event in events if isinstance(event, Completion)]
    assert len(completions) == 1 and events[-1] is completions[0]
    return events, completions[0]


def texts(events: list[ModelEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, TextDelta)]


def reasonings(events: list[ModelEvent]) -> list[str]:
    return [event.text for event in events if isinstance(event, ReasoningDelta)]


async def test_streamed_text_arrives_in_pieces_in_order(model_server: ScriptedModelServer) -> None:
    answer = "It is a quarter past ten in the morning."
    model_server.script(Reply(text=answer, chunks=5, usage=(42, 9)))
    async with model(model_server.base_url) as chat:
        events, completion = await turn(chat)
    assert len(texts(events)) == 5
    assert "".join(texts(events)) == answer
    assert completion.text == answer
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == ()
    assert completion.usage is not None and (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        42,
        9,
    )
    [body] = model_server.bodies
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == QUESTION
    assert body["model"] == "scripted-model"
    assert "tools" not in body
    assert model_server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
async def test_reasoning_is_kept_apart_from_the_answer(
    model_server: ScriptedModelServer, field: Any, streamed: bool
) -> None:
    thought = "The user wants the time. I should say ten."
    model_server.script(Reply(text="Ten o'clock.", reasoning=thought, reasoning_field=field))
    async with model(model_server.base_url, stream_tool_turns=streamed) as chat:
        events, completion = await turn(chat, tools=TOOLS)
    assert "".join(texts(events)) == "Ten o'clock." == completion.text
    assert "".join(reasonings(events)) == thought == completion.reasoning
    assert len(reasonings(events)) == (3 if streamed else 1)
    assert model_server.bodies[0]["stream"] is streamed


ARGS_A = {"tz": "Europe/Berlin"}
ARGS_B = {"path": "notes/todo.md", "lines": [1, 2, 3], "text": 'quote " and {braces}'}


@pytest.mark.parametrize("style", ["first", "repeat", "no_index"])
async def test_a_streamed_tool_call_is_assembled(model_server: ScriptedModelServer, style: ToolCallStyle) -> None:
    model_server.script(Reply(tool_calls=(Call("time_now", ARGS_A, id="call_abc"),), style=style, chunks=4))
    async with model(model_server.base_url) as chat:
        events, completion = await turn(chat, tools=TOOLS, tool_choice="auto")
    assert texts(events) == []
    [call] = completion.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("call_abc", "time_now", ARGS_A)
    assert completion.finish_reason == "tool_calls"
    body = model_server.bodies[0]
    assert body["stream"] is True
    assert body["tools"] == TOOLS
    assert body["tool_choice"] == "auto"


@pytest.mark.parametrize("style", ["first", "repeat", "no_index"])
async def test_parallel_streamed_tool_calls_are_assembled(
    model_server: ScriptedModelServer, style: ToolCallStyle
) -> None:
    calls = (Call("time_now", ARGS_A), Call("files_read", ARGS_B), Call("time_now", {}))
    model_server.script(Reply(text="Checking.", tool_calls=calls, style=style, chunks=5))
    async with model(model_server.base_url) as chat:
        events, completion = await turn(chat, tools=TOOLS)
    assert "".join(texts(events)) == "Checking."
    assert [(call.name, json.loads(call.arguments)) for call in completion.tool_calls] == [
        ("time_now", ARGS_A),
        ("files_read", ARGS_B),
        ("time_now", {}),
    ]
    ids = [call.id for call in completion.tool_calls]
    assert len(set(ids)) == 3 and all(ids)


async def test_tool_calls_in_a_whole_response_are_read(model_server: ScriptedModelServer) -> None:
    calls = (Call("time_now", ARGS_A, id="c1"), Call("files_read", ARGS_B, id="c2"))
    model_server.script(Reply(tool_calls=calls))
    async with model(model_server.base_url, stream_tool_turns=False) as chat:
        events, completion = await turn(chat, tools=TOOLS)
    assert model_server.bodies[0].get("stream") in (False, None)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("c1", "time_now", ARGS_A),
        ("c2", "files_read", ARGS_B),
    ]
    assert texts(events) == []


async def test_a_tool_turn_without_streaming_still_gives_text(model_server: ScriptedModelServer) -> None:
    model_server.script(Reply(text="No tool needed: it is ten.", chunks=4))
    async with model(model_server.base_url, stream_tool_turns=False) as chat:
        events, completion = await turn(chat, tools=TOOLS)
        model_server.script(Reply(text="Streamed again.", chunks=3))
        later, _ = await turn(chat)  # no tools offered: streamed as usual
    assert model_server.bodies[0].get("stream") in (False, None)
    assert "stream_options" not in model_server.bodies[0]
    assert texts(events) == ["No tool needed: it is ten."] and completion.text == "No tool needed: it is ten."
    assert completion.usage is not None
    assert model_server.bodies[1]["stream"] is True and len(texts(later)) == 3


async def test_malformed_streamed_arguments_repeat_the_turn_without_streaming(
    model_server: ScriptedModelServer,
) -> None:
    model_server.script(
        Reply(text="Let me look.", tool_calls=(Call("files_read", '{"path": "notes'),)),
        Reply(text="Let me look.", tool_calls=(Call("files_read", {"path": "notes"}),)),
    )
    async with model(model_server.base_url) as chat:
        events, completion = await turn(chat, tools=TOOLS)
    first, second = model_server.bodies
    assert first["stream"] is True
    assert second.get("stream") in (False, None)
    assert second["messages"] == first["messages"]
    assert "".join(texts(events)) == "Let me look."  # the repeat's text was already shown: not shown twice
    [call] = completion.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("files_read", {"path": "notes"})


async def test_the_reply_can_depend_on_the_request(model_server: ScriptedModelServer) -> None:
    """The scripted 'call a tool, then answer with its result', and the history the model is sent."""
    model_server.script(
        Reply(tool_calls=(Call("time_now", ARGS_A),)),
        lambda body: Reply(text=f"It is {tool_results(body)[-1]}."),
    )
    history = list(QUESTION)
    async with model(model_server.base_url) as chat:
        _, asked = await turn(chat, history, TOOLS)
        [call] = asked.tool_calls
        history.append(
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                ],
            }
        )
        history.append({"role": "tool", "tool_call_id": call.id, "content": "10:15"})
        events, answer = await turn(chat, history, TOOLS)
    assert answer.text == "It is 10:15." == "".join(texts(events))
    sent = model_server.bodies[1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "10:15"}
    assert model_server.pending == 0


async def test_429_then_success_waits_for_retry_after(model_server: ScriptedModelServer) -> None:
    model_server.script(Fail(429, retry_after="1"), Reply(text="Finally."))
    async with model(model_server.base_url) as chat:
        _, completion = await turn(chat)
    assert completion.text == "Finally."
    first, second = model_server.requests
    assert second.at - first.at >= 0.95  # it waited as asked, not its own 10 ms backoff


async def test_a_long_retry_after_is_capped(model_server: ScriptedModelServer) -> None:
    model_server.script(Fail(429, times=2, retry_after="3600"), Reply(text="Done."))
    async with ChatModel(settings(model_server.base_url), retry_after_cap=0.05) as chat:
        _, completion = await turn(chat)  # bounded by fail_after(10) in turn()
    assert completion.text == "Done."
    assert len(model_server.requests) == 3


async def test_500_forever_ends_in_model_unavailable(model_server: ScriptedModelServer) -> None:
    model_server.script(Fail(500, times=None))
    with capture_logs() as logs:
        async with model(model_server.base_url, retry_attempts=3) as chat:
            with pytest.raises(ModelUnavailable) as caught:
                await turn(chat)
    message = str(caught.value)
    assert message == "The model server did not answer (HTTP 500 after 3 attempts)"
    assert API_KEY not in message
    assert len(model_server.requests) == 3
    failures = [entry for entry in logs if entry["event"] == "llm_attempt_failed"]
    assert [(entry["attempt"], entry["status"], entry["log_level"]) for entry in failures] == [
        (1, 500, "warning"),
        (2, 500, "warning"),
        (3, 500, "warning"),
    ]
    assert all(API_KEY not in repr(entry) and "What time" not in repr(entry) for entry in logs)


async def test_a_refusal_is_not_retried(model_server: ScriptedModelServer) -> None:
    model_server.script(Fail(401, message="bad key"))
    async with model(model_server.base_url) as chat:
        with pytest.raises(ModelUnavailable, match=r"refused the API key \(HTTP 401\)"):
            await turn(chat)
    assert len(model_server.requests) == 1


async def test_a_hang_ends_at_the_timeout(model_server: ScriptedModelServer) -> None:
    model_server.script(Hang(times=None))
    async with model(model_server.base_url, timeout=1.0, retry_attempts=2) as chat:
        with pytest.raises(ModelUnavailable, match=r"did not answer within 1 s \(2 attempts\)"):
            await turn(chat)
    assert len(model_server.requests) == 2


async def test_a_failure_after_the_first_delta_is_not_retried(model_server: ScriptedModelServer) -> None:
    model_server.script(Reply(text="The answer is", hang_after=True), Reply(text="never sent"))
    events: list[ModelEvent] = []
    async with model(model_server.base_url, timeout=1.0, retry_attempts=3) as chat:
        with pytest.raises(ModelUnavailable, match="did not finish its answer within 1 s"), anyio.fail_after(10):
            async for event in chat.complete(QUESTION):
                events.append(event)
    assert "".join(texts(events)) == "The answer is"
    assert len(model_server.requests) == 1


async def test_connection_refused_ends_in_model_unavailable() -> None:
    url = f"http://user:pw@127.0.0.1:{free_port()}/v1"
    async with model(url, retry_attempts=2) as chat:
        with pytest.raises(ModelUnavailable) as caught:
            await turn(chat)
        with anyio.fail_after(15):
            assert await chat.healthy() is False
    assert "could not be reached (2 attempts)" in str(caught.value)
    assert "pw" not in str(caught.value)


async def test_healthy_against_a_live_server(model_server: ScriptedModelServer) -> None:
    async with model(model_server.base_url) as chat:
        with anyio.fail_after(15):
            assert await chat.healthy() is True
    assert model_server.requests == []  # the model list sufficed: no completion was spent


async def test_healthy_falls_back_to_a_one_token_completion() -> None:
    with ScriptedModelServer(models_endpoint=False) as server:
        server.always(Reply(text="pong"))
        async with model(server.base_url) as chat:
            with anyio.fail_after(15):
                assert await chat.healthy() is True
        [body] = server.bodies
        assert body["max_tokens"] == 1


async def test_healthy_is_false_when_the_model_fails() -> None:
    with ScriptedModelServer(models_endpoint=False) as server:
        server.always(Fail(500, times=None))
        async with model(server.base_url) as chat:
            with anyio.fail_after(15):
                assert await chat.healthy() is False


async def test_instant_mode_answers_every_request_without_a_script(model_server: ScriptedModelServer) -> None:
    model_server.instant("fast")
    async with model(model_server.base_url) as chat:
        for _ in range(3):
            events, completion = await turn(chat)
            assert texts(events) == ["fast"] and completion.text == "fast"
    assert model_server.requests == []  # benchmarks do not pile up recorded bodies


# -- limits on a broken or hostile model (issue 9, items 11 and 12) ------------------------------------------------


async def test_the_timeout_bounds_a_whole_dripping_answer_and_frees_the_slot(model_server: ScriptedModelServer) -> None:
    model_server.script(Reply(text="one two three four five six seven eight", chunks=8, drip=0.5), Reply(text="next"))
    async with model(model_server.base_url, timeout=1.0, max_concurrent_calls=1) as chat:
        started = anyio.current_time()
        with pytest.raises(ModelUnavailable, match="did not finish its answer within 1 s"):
            await turn(chat)
        assert anyio.current_time() - started < 2.0  # not the 4 s the drip takes
        _, completion = await turn(chat)  # the one slot is free again
    assert completion.text == "next"


async def test_a_stream_over_the_size_limit_is_cut_off(model_server: ScriptedModelServer) -> None:
    calls = tuple(Call("files_read", {"path": "p" * 1000}) for _ in range(2_000))
    model_server.script(Reply(tool_calls=calls, chunks=1))
    with capture_logs() as logs:
        async with model(model_server.base_url, max_response_bytes=100_000) as chat:
            _, completion = await turn(chat, tools=TOOLS)
    assert completion.cut_at is not None and completion.cut_at <= 100_000 + 2_000
    assert completion.finish_reason == "length"
    assert 90 <= len(completion.tool_calls) <= 100  # not 2,000 calls held in memory
    assert len(model_server.requests) == 1  # a cut answer is not asked again without streaming
    assert any(entry["event"] == "llm_answer_cut" for entry in logs)


async def test_one_huge_event_is_cut_without_reading_it_whole(model_server: ScriptedModelServer) -> None:
    model_server.script(Reply(text="z" * 3_000_000, chunks=1))
    async with model(model_server.base_url, max_response_bytes=100_000) as chat:
        events, completion = await turn(chat)
    assert completion.cut_at == 0 and completion.text == "" and texts(events) == []


async def test_an_event_of_many_data_lines_is_cut_at_the_size_limit(model_server: ScriptedModelServer) -> None:
    # Data lines without the blank line that ends an event pile up in one event: they count against the limit too.
    model_server.script(Reply(raw=("data: " + "z" * 1000 + "\n") * 3000))
    async with model(model_server.base_url, max_response_bytes=100_000) as chat:
        events, completion = await turn(chat)
    assert completion.cut_at == 0 and completion.text == "" and texts(events) == []


async def test_a_whole_answer_over_the_size_limit_is_refused(model_server: ScriptedModelServer) -> None:
    model_server.script(Reply(text="z" * 300_000))
    async with model(model_server.base_url, max_response_bytes=100_000, stream_tool_turns=False) as chat:
        with pytest.raises(ModelUnavailable, match="sent an answer over 100000 bytes"):
            await turn(chat, tools=TOOLS)


async def test_an_error_event_in_the_stream_is_retried_before_any_text_and_ends_the_turn_after(
    model_server: ScriptedModelServer,
) -> None:
    model_server.script(Reply(stream_error="overloaded"), Reply(text="second try"))
    async with model(model_server.base_url, retry_attempts=2) as chat:
        _, completion = await turn(chat)
        assert completion.text == "second try"
        model_server.script(Reply(text="half an answer", stream_error="engine crashed"))
        with pytest.raises(ModelUnavailable, match="broke off its answer"):
            await turn(chat)
    assert len(model_server.requests) == 3


async def test_a_connection_dropped_mid_answer_ends_the_turn(model_server: ScriptedModelServer) -> None:
    model_server.script(Reply(text="half an answer", break_after=True))
    async with model(model_server.base_url, retry_attempts=2) as chat:
        with pytest.raises(ModelUnavailable, match=r"broke off its answer \(connection\)"):
            await turn(chat)
    assert len(model_server.requests) == 1


async def test_a_call_may_take_its_own_model_and_temperature_on_the_same_client(
    model_server: ScriptedModelServer,
) -> None:
    model_server.always(Reply(text="ok"))
    async with model(model_server.base_url, temperature=0.7) as chat:
        await turn(chat)
        await turn(chat, model="big-model", temperature=1.5)
        await turn(chat, model="big-model", temperature=0.0)  # 0 is a temperature, not "unset"
        await turn(chat, QUESTION, TOOLS, model="small-model")  # a tool turn too
    sent = [(body["model"], body["temperature"]) for body in model_server.bodies]
    assert sent == [("scripted-model", 0.7), ("big-model", 1.5), ("big-model", 0.0), ("small-model", 0.7)]


async def test_a_chosen_model_the_server_does_not_serve_is_named_in_the_failure(
    model_server: ScriptedModelServer,
) -> None:
    model_server.script(Fail(404, message="model not found"))
    async with model(model_server.base_url, retry_attempts=1) as chat:
        with anyio.fail_after(10), pytest.raises(ModelUnavailable, match="does not serve model 'big-model'"):
            async for _ in chat.complete(QUESTION, model="big-model"):
                pass
