"""What a turn reports as it runs: the model's deltas (from the model client), each model call's cost, tools
starting and finishing, and the turn's end with its answer. Values only; front ends format them."""

from dataclasses import dataclass
from typing import Any

from host.engine.llm import ReasoningDelta, TextDelta, Usage
from host.mcp.tools import BinaryPart


@dataclass(frozen=True, slots=True)
class ToolStarted:
    call_id: str
    server: str
    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolFinished:
    call_id: str
    server: str
    tool: str
    ok: bool
    seconds: float
    media: tuple[BinaryPart, ...] = ()  # images, audio and blobs the result held, for front ends to show


@dataclass(frozen=True, slots=True)
class ModelCalled:
    """One model call finished, with what it cost (the server's count, else our estimate): reported as it happens,
    so that a turn that fails later is still counted."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class TurnFinished:
    text: str
    usage: Usage
    tool_calls: int
    refused: bool = False  # the message was not taken (it cannot fit the context): `text` says why; nothing stored


EngineEvent = TextDelta | ReasoningDelta | ToolStarted | ToolFinished | ModelCalled | TurnFinished
