"""Benchmark whole turns through the engine with an instant scripted model: turns per second, one chat at a
time and many chats at once, on SQLite (a temporary file) and PostgreSQL (a throw-away database, when
reachable). Run: `python -m bench.engine_bench [--turns N] [--chats N] [--postgres-url URL]`.
"""

import argparse
import statistics
import tempfile
import time
from typing import Any

import anyio
import asyncpg

from host.engine.llm import ChatModel, ModelSettings
from host.engine.loop import Engine, EngineSettings
from host.log import configure_logging
from host.mcp.registry import Registry
from host.storage import ConversationStore
from tests.peers.openai_server import ScriptedModelServer
from tests.postgres import create_database, drop_databases

POSTGRES_URL = "postgresql+asyncpg://root@127.0.0.1:5432/test"


async def measure(url: str, model_url: str, turns: int, chats: int) -> dict[str, Any]:
    settings = ModelSettings(base_url=model_url, api_key="bench", model="instant", retry_attempts=1)
    async with ConversationStore.open(url) as store, Registry([]) as registry, ChatModel(settings) as model:
        engine = Engine(model, registry, store, EngineSettings(system_prompt="Be brief."))
        latencies: list[float] = []

        async def chat(chat_id: int, count: int) -> None:
            for index in range(count):
                started = time.perf_counter()
                async for _event in engine.turn(chat_id, f"message {index}", user_id=chat_id):
                    pass
                latencies.append(time.perf_counter() - started)

        await chat(0, 20)  # warm-up
        latencies.clear()
        started = time.perf_counter()
        async with anyio.create_task_group() as tasks:
            for chat_id in range(1, chats + 1):
                tasks.start_soon(chat, chat_id, turns // chats)
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "turns": len(latencies),
        "per_second": len(latencies) / elapsed,
        "p50": statistics.median(ordered) * 1000,
        "p95": ordered[int(len(ordered) * 0.95) - 1] * 1000,
    }


async def main(options: argparse.Namespace) -> None:
    configure_logging("WARNING")
    print(f"turns through the engine, instant scripted model, {options.turns} turns per row")
    print(f"{'backend':<11} {'chats':>5} {'turns/s':>8} {'p50 ms':>7} {'p95 ms':>7}")
    with ScriptedModelServer() as model, tempfile.TemporaryDirectory() as folder:
        model.instant("ok")
        backends: list[tuple[str, str | None]] = [("SQLite", f"sqlite+aiosqlite:///{folder}/bench.db")]
        try:
            backends.append(("PostgreSQL", await create_database(options.postgres_url, "mcpbot_bench")))
        except (OSError, asyncpg.PostgresError):
            backends.append(("PostgreSQL", None))
        try:
            for name, url in backends:
                if url is None:
                    print(f"{name:<11} skipped: not reachable")
                    continue
                for chats in (1, options.chats):
                    row = await measure(url, model.base_url, options.turns, chats)
                    print(f"{name:<11} {chats:>5} {row['per_second']:>8.1f} {row['p50']:>7.1f} {row['p95']:>7.1f}")
        finally:
            await drop_databases(options.postgres_url, [url for name, url in backends if name == "PostgreSQL" and url])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=400)
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    anyio.run(main, parser.parse_args())
