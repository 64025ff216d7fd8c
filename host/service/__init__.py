"""The service layer between the front ends (Telegram, the terminal) and the engine: the gate, the one claim of
every update, the one per-chat serialiser (ChatQueues), turns, replies owed, and status values to format.

This package's names are the front ends' whole view of the layers below: the values they format and the events a
turn yields are imported from here. Imports the engine, the MCP registry, storage and the rate limiter.
"""

from host.engine.events import EngineEvent, ToolFinished, ToolStarted, TurnFinished
from host.engine.llm import ReasoningDelta, TextDelta
from host.mcp.tools import BinaryPart
from host.service.broadcasts import Broadcasting, BroadcastRefused, Started
from host.service.gate import Access, Refused, Request, parse_user_id
from host.service.preferences import MAX_SYSTEM_CHARS, ChatSettingsView, SettingRefused, Who
from host.service.queues import ChatQueues
from host.service.service import Service
from host.service.status import Readiness, ServerStatus, ToolInfo
from host.service.usage import Budgets
from host.storage.broadcasts import Claimed, Outcome, Progress
from host.storage.pending import Orphan

__all__ = [
    "MAX_SYSTEM_CHARS",
    "Access",
    "BinaryPart",
    "BroadcastRefused",
    "Broadcasting",
    "Budgets",
    "ChatQueues",
    "ChatSettingsView",
    "Claimed",
    "EngineEvent",
    "Orphan",
    "Outcome",
    "Progress",
    "Readiness",
    "ReasoningDelta",
    "Refused",
    "Request",
    "ServerStatus",
    "Service",
    "SettingRefused",
    "Started",
    "TextDelta",
    "ToolFinished",
    "ToolInfo",
    "ToolStarted",
    "TurnFinished",
    "Who",
    "parse_user_id",
]
