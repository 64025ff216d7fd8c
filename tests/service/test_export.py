"""The two files of /export as a user reads them: JSON that parses with a schema version, Markdown with a heading
per conversation, "**You**" and "**Bot**" lines and the tool calls; a cut export says so in both."""

import json
from datetime import UTC, datetime

from host.service.export import SCHEMA_VERSION, export_files
from host.storage.export import Exported, ExportedConversation, ExportedMessage

AT = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
CALL = {"id": "c1", "type": "function", "function": {"name": "files__read_file", "arguments": '{"path": "a"}'}}


def conversation(private: bool = True) -> ExportedConversation:
    messages = [
        ExportedMessage("user", "What is in a?", None, None, AT),
        ExportedMessage("assistant", None, [CALL], None, AT),
        ExportedMessage("tool", "apples\npears", None, "c1", AT),
        ExportedMessage("assistant", "Fruit.", None, None, AT),
    ]
    return ExportedConversation(1, 42 if private else -100, 0, private, AT, AT if private else None, messages)


def test_json_and_markdown_hold_every_message_and_the_tool_calls() -> None:
    files = export_files(Exported([conversation(), conversation(private=False)], cut=False), 42, AT)
    document = json.loads(files.json)
    markdown = files.markdown.decode()
    assert document["schema_version"] == SCHEMA_VERSION and document["user_id"] == 42 and not document["cut"]
    first = document["conversations"][0]
    assert first["reset_at"] == AT.isoformat() and first["kind"] == "private"
    assert first["messages"][1]["tool_calls"] == [
        {"id": "c1", "name": "files__read_file", "arguments": '{"path": "a"}'}
    ]
    assert first["messages"][2] == {"role": "tool", "at": AT.isoformat(), "text": "apples\npears", "tool_call_id": "c1"}
    assert (files.conversations, files.messages) == (2, 8)
    assert markdown.startswith("# mcpbot export for user 42\n")
    assert "## Private chat: started 2026-12-04 09:30 UTC, ended by /reset 2026-12-04 09:30 UTC" in markdown
    assert "## Group -100 (your messages only): started 2026-12-04 09:30 UTC\n" in markdown
    assert "**You** (2026-12-04 09:30 UTC):\n\nWhat is in a?" in markdown
    assert '- tool call `files__read_file` with `{"path": "a"}`' in markdown
    assert "> apples\n> pears" in markdown and "**Bot** (2026-12-04 09:30 UTC):\n\nFruit." in markdown


def test_a_cut_export_says_so_in_both_files() -> None:
    files = export_files(Exported([conversation()], cut=True), None, AT, max_bytes=2 * 1024 * 1024)
    note = "Older messages were left out: the export holds the newest 2 MB of content."
    assert json.loads(files.json)["note"] == note and files.cut
    assert f"> {note}" in files.markdown.decode() and "for the terminal" in files.markdown.decode()


def test_topics_other_roles_and_a_call_without_a_function_still_read() -> None:
    odd = [
        ExportedMessage("system", "be brief", None, None, AT),
        ExportedMessage("assistant", None, [{"id": "c2"}], None, AT),
    ]
    in_topic = ExportedConversation(2, -100, 7, False, AT, None, odd)
    files = export_files(Exported([in_topic], cut=False), 42, AT)
    markdown = files.markdown.decode()
    assert "## Group -100 (your messages only), topic 7: started" in markdown
    assert "*system* (2026-12-04 09:30 UTC):\n\nbe brief" in markdown and "- tool call `?` with `{}`" in markdown
    assert json.loads(files.json)["conversations"][0]["messages"][1]["tool_calls"] == [
        {"id": "c2", "name": "?", "arguments": None}
    ]
