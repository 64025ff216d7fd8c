"""One step's tool calls as the model asked for them, resolved once against the limits: which run, which are
refused (over the count limits, arguments too large, cut off) with the reason as their result, their ids made
unique and storable, their arguments parsed; and the one cut of a tool result to the room it has.

Imports the model client's values, the catalogue and token estimates; never storage or telegram.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from host.engine import search
from host.engine.llm import Completion, ToolCall
from host.engine.llm.wire import new_call_id
from host.mcp.registry import CatalogueEntry
from host.tokens import count_tokens

log = structlog.get_logger("host.engine")

MAX_CALL_ID = 128  # what the store keeps; longer or repeated ids from a model are replaced
RECORDED_CALLS_PER_STEP_LIMITS = 2
"""Of one step's calls, at most this many times max_tool_calls_per_step are kept on record (each with its
result, run or refused); the rest are dropped unseen, so that a model asking for 10,000 calls costs no more."""


@dataclass(frozen=True, slots=True)
class CallLimits:
    per_step: int
    per_turn: int
    argument_bytes: int


@dataclass(frozen=True, slots=True)
class Call:
    """One tool call of a step, resolved once: the model's call, its server and tool, its parsed arguments."""

    call: ToolCall  # as recorded: refused calls carry a short placeholder instead of their arguments
    server: str
    tool: str
    arguments: dict[str, Any] | None  # None: the model's arguments were not a JSON object
    refusal: str | None = None  # set: not run, and this is its result
    shown: bool = True  # reported as ToolStarted/ToolFinished (calls over the count limits are not)

    def wire(self) -> dict[str, Any]:
        """The call as the chat-completions API records it in an assistant message."""
        return {
            "id": self.call.id,
            "type": "function",
            "function": {"name": self.call.name, "arguments": self.call.arguments},
        }


def resolve(
    completion: Completion, tools: Mapping[str, CatalogueEntry], limits: CallLimits, *, used: int, chat_id: int
) -> list[Call]:
    """The step's calls in the order asked; `used` is how many calls the turn has run before this step."""
    raws = completion.tool_calls
    kept = limits.per_step * RECORDED_CALLS_PER_STEP_LIMITS
    if len(raws) > kept:
        log.warning("tool_calls_dropped", chat_id=chat_id, asked=len(raws), kept=kept)
        raws = raws[:kept]
    seen: set[str] = set()
    calls = []
    runs = 0
    for index, raw in enumerate(raws):
        call_id = raw.id if raw.id and raw.id not in seen and len(raw.id) <= MAX_CALL_ID else new_call_id()
        seen.add(call_id)
        entry = tools.get(raw.name[:200])
        server, tool = (entry.spec.server, entry.spec.name) if entry else ("?", raw.name[:200])
        if raw.name == search.NAME:
            server, tool = "mcpbot", search.NAME  # the bot's own tool (large catalogues)
        size = len(raw.arguments.encode())
        cut = completion.cut_at is not None and index == len(completion.tool_calls) - 1
        refusal, shown = None, True
        if cut:
            refusal = (
                f"Error: not run: your answer passed {completion.cut_at:,} bytes while this call was being"
                " written, and was cut off there. Send smaller tool calls."
            )
        elif size > limits.argument_bytes:
            refusal = (
                f"Error: not run: its arguments are {size:,} bytes, over the limit of"
                f" {limits.argument_bytes:,}. Send smaller arguments (for example, in several calls)."
            )
        elif runs >= limits.per_step:
            refusal, shown = _over_step(len(completion.tool_calls), limits.per_step), False
        elif used + runs >= limits.per_turn:
            refusal = (
                f"Error: not run: this turn has used all of its {limits.per_turn} tool calls."
                " Answer with what you have."
            )
            shown = False
        else:
            runs += 1
        arguments = raw.arguments if refusal is None else _placeholder(size)
        call = ToolCall(id=call_id, name=raw.name[:200], arguments=arguments)
        parsed = _arguments(raw.arguments) if refusal is None else {}
        calls.append(Call(call, server, tool, parsed, refusal, shown))
    if len(completion.tool_calls) > runs:
        log.warning("tool_calls_refused", chat_id=chat_id, asked=len(completion.tool_calls), run=runs)
    return calls


def fit(content: str, max_tokens: int, max_chars: int) -> str:
    """A tool result cut to the room left in the context (by its estimated tokens) and to the operator's
    character cap, whichever is smaller, with one note the model can read."""
    keep = min(len(content), max_chars)
    tokens = count_tokens(content)
    if tokens > max_tokens:
        keep = min(keep, len(content) * max_tokens // tokens)
    if keep == len(content):
        return content
    return f"{content[:keep]}\n[truncated to fit the context: showing {keep} of {len(content)} characters]"


def _arguments(text: str) -> dict[str, Any] | None:
    """The model's arguments as a dict; empty text is no arguments; anything but an object is None."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _placeholder(size: int) -> str:
    """What a refused call's arguments are recorded (and sent back to the model) as: a short JSON object."""
    return json.dumps({"omitted": f"{size} bytes of arguments, not run"})


def _over_step(asked: int, limit: int) -> str:
    return (
        f"Error: not run: you asked for {asked} tool calls at once, and at most {limit} run in one step."
        " Ask for the rest in your next step if you still need them."
    )
