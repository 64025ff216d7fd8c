"""A catalogue too large for its share of the context: the model is offered `search_tools` alone, what it finds
becomes callable for the rest of the turn, and a call to a found tool runs on its MCP server. A scripted model
server, our MCP test server behind the registry, a real SQLite store."""

from pathlib import Path
from typing import Any

import anyio
import pytest

from host.engine import search
from host.engine.events import ToolStarted, TurnFinished
from host.engine.llm import ChatModel, ModelSettings
from host.engine.loop import Engine, EngineSettings
from host.mcp.config import parse_servers
from host.mcp.registry import Registry
from host.storage import ConversationStore
from tests.conftest import peer_server
from tests.peers.openai_server import Call, Reply, ScriptedModelServer, tool_results

pytestmark = pytest.mark.anyio


def offered(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools") or []]


async def test_a_large_catalogue_is_searched_and_what_is_found_is_called(
    model_server: ScriptedModelServer, tmp_path: Path
) -> None:
    model_server.script(
        Reply(tool_calls=(Call("search_tools", {"query": "add two numbers"}),)),
        Reply(tool_calls=(Call("search_tools", {"query": "zzz qqq"}), Call("ours__add", {"a": 2, "b": 40}))),
        lambda body: Reply(text=f"The sum is {tool_results(body)[-1]}."),
    )
    servers = parse_servers({"mcpServers": {"ours": peer_server()}}, source="test", environ={})
    model_settings = ModelSettings(base_url=model_server.base_url, api_key="k", model="scripted", timeout=5)
    settings = EngineSettings(system_prompt="Be brief.", max_context_tokens=3000, answer_tokens=1000)
    with anyio.fail_after(30):
        async with (
            ConversationStore.open(f"sqlite+aiosqlite:///{tmp_path}/bot.db") as store,
            Registry(servers) as registry,
            ChatModel(model_settings) as model,
        ):
            catalogue = await registry.catalogue()
            assert catalogue.tokens > settings.tools_share * settings.max_context_tokens  # too large to send whole
            assert search.search(catalogue, "ADD numbers")[0].name == "ours__add"  # a name's word ranks first
            assert search.search(catalogue, "x") == search.search(catalogue, "") == []  # no word of 2 letters
            narrowed = catalogue.without(["ours"])  # a chat's /mcp off: built once, then reused on every turn
            assert len(narrowed) == 0 and "ours__add" in narrowed.hidden and narrowed is catalogue.without({"ours"})
            engine = Engine(model, registry, store, settings)
            events = [event async for event in engine.turn(1, "add 2 and 40", user_id=1)]
    first, second, third = model_server.bodies
    assert offered(first) == ["search_tools"]
    assert offered(second)[0] == "search_tools" and "ours__add" in offered(second)
    assert len(offered(second)) <= 1 + search.MAX_RESULTS
    assert tool_results(second)[0].startswith("These tools are now callable:\nours__add: ")
    assert tool_results(third)[0].startswith("No tool matches 'zzz qqq'")
    searched = [event for event in events if isinstance(event, ToolStarted) and event.tool == "search_tools"]
    assert [event.server for event in searched] == ["mcpbot", "mcpbot"]  # the bot's own tool, in the preview
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.text == "The sum is 42."
