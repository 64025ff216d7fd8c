"""The two files of /export: a JSON document (with a schema version, for programs) and a Markdown rendering (for
people) of what host.storage.export read. Pure: no database, no I/O. Imports only storage's export values.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from host.storage.export import Exported, ExportedConversation, ExportedMessage

SCHEMA_VERSION = 1
MAX_BYTES = 20 * 1024 * 1024  # of content; Telegram takes documents up to 50 MB from a bot
CUT_NOTE = "Older messages were left out: the export holds the newest {megabytes:g} MB of content."


@dataclass(frozen=True, slots=True)
class ExportFiles:
    """The two files, and what they hold in numbers (for the audit log: never content)."""

    json: bytes
    markdown: bytes
    conversations: int
    messages: int
    cut: bool


def export_files(exported: Exported, user_id: int | None, at: datetime, max_bytes: int = MAX_BYTES) -> ExportFiles:
    note = CUT_NOTE.format(megabytes=round(max_bytes / 1024 / 1024, 3)) if exported.cut else None
    return ExportFiles(
        json=as_json(exported, user_id, at, note),
        markdown=as_markdown(exported, user_id, at, note),
        conversations=len(exported.conversations),
        messages=exported.messages,
        cut=exported.cut,
    )


def as_json(exported: Exported, user_id: int | None, at: datetime, note: str | None) -> bytes:
    document = {
        "schema_version": SCHEMA_VERSION,
        "user_id": user_id,
        "exported_at": at.isoformat(),
        "cut": exported.cut,
        "note": note,
        "conversations": [_conversation(conversation) for conversation in exported.conversations],
    }
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


def _conversation(conversation: ExportedConversation) -> dict[str, Any]:
    return {
        "chat_id": conversation.chat_id,
        "topic_id": conversation.topic_id,
        "kind": "private" if conversation.private else "group (your messages only)",
        "created_at": conversation.created_at.isoformat(),
        "reset_at": conversation.reset_at.isoformat() if conversation.reset_at else None,
        "messages": [_message(message) for message in conversation.messages],
    }


def _message(message: ExportedMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": message.role, "at": message.at.isoformat(), "text": message.content}
    if message.tool_calls:
        entry["tool_calls"] = [
            {"id": call.get("id"), "name": _name(call), "arguments": _function(call).get("arguments")}
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        entry["tool_call_id"] = message.tool_call_id
    return entry


def as_markdown(exported: Exported, user_id: int | None, at: datetime, note: str | None) -> bytes:
    whose = f"user {user_id}" if user_id is not None else "the terminal"
    lines = [f"# mcpbot export for {whose}", "", f"Exported {_when(at)}."]
    if note:
        lines += ["", f"> {note}"]
    for conversation in exported.conversations:
        where = "Private chat" if conversation.private else f"Group {conversation.chat_id} (your messages only)"
        if conversation.topic_id:
            where += f", topic {conversation.topic_id}"
        ended = f", ended by /reset {_when(conversation.reset_at)}" if conversation.reset_at else ""
        lines += ["", f"## {where}: started {_when(conversation.created_at)}{ended}"]
        lines += [line for message in conversation.messages for line in _markdown_message(message)]
    return ("\n".join(lines) + "\n").encode()


def _markdown_message(message: ExportedMessage) -> list[str]:
    lines = [""]
    if message.role == "user":
        lines.append(f"**You** ({_when(message.at)}):")
    elif message.role == "assistant":
        lines.append(f"**Bot** ({_when(message.at)}):")
    elif message.role == "tool":
        lines.append(f"*Tool result* ({_when(message.at)}):")
    else:
        lines.append(f"*{message.role}* ({_when(message.at)}):")
    if message.content:
        lines += ["", *_quoted(message.content)] if message.role == "tool" else ["", message.content]
    for call in message.tool_calls or []:
        lines += ["", f"- tool call `{_name(call)}` with `{_function(call).get('arguments') or '{}'}`"]
    return lines


def _quoted(text: str) -> list[str]:
    return ["> " + line for line in text.splitlines()]


def _function(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    return function if isinstance(function, dict) else {}


def _name(call: dict[str, Any]) -> str:
    return str(_function(call).get("name") or "?")


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
