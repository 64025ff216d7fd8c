"""The peers most Telegram tests talk to: the fake Bot API, the scripted model server, and a PTB Bot pointed at
the fake. A test module that needs them set up differently defines its own fixture of the same name."""

from collections.abc import AsyncIterator, Iterator

import pytest
from telegram import Bot

from tests.peers.openai_server import ScriptedModelServer
from tests.peers.telegram_server import FakeBotAPI


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as server:
        yield server


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    async with Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url) as client:
        yield client
