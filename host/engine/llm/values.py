"""What a model turn is made of, as the engine sees it: settings, streamed deltas and the one Completion."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # the raw JSON text the model produced ("" is given as "{}")


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    reasoning: str
    tool_calls: tuple[ToolCall, ...]
    usage: Usage | None
    finish_reason: str | None
    cut_at: int | None = None  # set: the answer passed max_response_bytes here and the rest was not read


ModelEvent = TextDelta | ReasoningDelta | Completion


@dataclass(frozen=True, slots=True)
class ModelSettings:
    base_url: str
    api_key: str
    model: str
    temperature: float = 0.7
    max_tokens: int = 2048
    timeout: float = 120.0
    retry_attempts: int = 3
    stream_tool_turns: bool = True
    max_concurrent_calls: int = 10  # requests in flight to the model server at once; more wait their turn
    max_response_bytes: int = 2 * 1024 * 1024  # text, reasoning and tool arguments of one answer, in UTF-8
