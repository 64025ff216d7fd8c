"""Model-facing tool names are legal for OpenAI-compatible APIs, unique, and stable."""

import re

from host.mcp.naming import model_name

LEGAL = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def test_plain_names_are_server_double_underscore_tool() -> None:
    assert model_name("files", "read_file", set()) == "files__read_file"


def test_illegal_characters_are_replaced_and_a_hash_keeps_them_apart() -> None:
    first = model_name("my server", "read.file", set())
    second = model_name("my server", "read_file", {first})
    assert LEGAL.match(first) and LEGAL.match(second)
    assert first.startswith("my_server__read_file_") and first != second


def test_long_names_are_truncated_to_64_and_stay_unique() -> None:
    taken: set[str] = set()
    for index in range(50):
        name = model_name("a-very-long-server-name-for-testing", f"an_extremely_long_tool_name_number_{index}", taken)
        assert LEGAL.match(name) and name not in taken
        taken.add(name)


def test_names_are_stable_across_calls() -> None:
    assert model_name("srv", "tool.x", set()) == model_name("srv", "tool.x", set())
