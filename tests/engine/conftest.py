"""Engine fixtures: a scripted OpenAI-compatible model server (tests/peers/openai_server.py), one per test."""

from collections.abc import Iterator

import pytest

from tests.peers.openai_server import ScriptedModelServer
from tests.stores import backend, databases, new_id, store_url

__all__ = ["backend", "databases", "model_server", "new_id", "store_url"]


@pytest.fixture
def model_server() -> Iterator[ScriptedModelServer]:
    """A started server; script it with `.script(...)`, point a client at `.base_url`, read `.bodies`."""
    with ScriptedModelServer() as server:
        yield server
