"""MCP input schemas become function parameters that OpenAI-compatible servers accept."""

from typing import Any

from host.mcp.schema import function_parameters


def test_a_clean_schema_passes_through_unchanged() -> None:
    schema = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
    assert function_parameters(schema) == schema


def test_missing_properties_and_type_are_added() -> None:
    assert function_parameters({}) == {"type": "object", "properties": {}}
    assert function_parameters({"type": "object"}) == {"type": "object", "properties": {}}


def test_schema_keys_are_dropped_everywhere() -> None:
    schema: dict[str, Any] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"$schema": "x", "type": "integer"}},
    }
    assert function_parameters(schema) == {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert "$schema" in schema  # the input is not mutated


def test_arrays_get_items_at_any_depth() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array"},
            "nested": {"type": "object", "properties": {"ids": {"type": ["array", "null"]}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "array"}}}},
        },
        "$defs": {"Thing": {"type": "array"}},
    }
    fixed = function_parameters(schema)["properties"]
    assert fixed["tags"]["items"] == {}
    assert fixed["nested"]["properties"]["ids"]["items"] == {}
    assert fixed["list"]["items"]["properties"]["x"]["items"] == {}
    assert function_parameters(schema)["$defs"]["Thing"]["items"] == {}


def test_top_level_any_of_is_flattened_into_one_object() -> None:
    schema = {
        "anyOf": [
            {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "verbose": {"type": "boolean"}},
                "required": ["id", "verbose"],
            },
            {
                "type": "object",
                "properties": {"name": {"type": "string"}, "verbose": {"type": "boolean"}},
                "required": ["name", "verbose"],
            },
        ]
    }
    fixed = function_parameters(schema)
    assert "anyOf" not in fixed and fixed["type"] == "object"
    assert set(fixed["properties"]) == {"id", "name", "verbose"}
    assert fixed["required"] == ["verbose"]
    assert "one of several argument shapes" in fixed["description"]


def test_top_level_all_of_requires_everything() -> None:
    schema = {
        "allOf": [
            {"properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "string"}}, "required": ["b"]},
        ]
    }
    fixed = function_parameters(schema)
    assert fixed["required"] == ["a", "b"] and set(fixed["properties"]) == {"a", "b"}


def test_enum_and_default_values_are_left_alone() -> None:
    schema = {"type": "object", "properties": {"mode": {"type": "string", "enum": ["array"], "default": []}}}
    assert function_parameters(schema) == schema


def test_ref_branches_of_a_top_level_union_keep_their_parameters() -> None:
    schema = {
        "anyOf": [{"$ref": "#/$defs/ById"}, {"$ref": "#/$defs/ByName"}],
        "$defs": {
            "ById": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]},
            "ByName": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
    }
    fixed = function_parameters(schema)
    assert set(fixed["properties"]) == {"id", "name"} and "required" not in fixed


def test_malformed_parts_are_ignored_rather_than_trusted() -> None:
    schema = {
        "oneOf": [{"properties": ["not", "a", "map"], "required": "abc"}, {"properties": {"x": True}}],
        "required": "x",
    }
    fixed = function_parameters(schema)
    assert fixed["properties"] == {"x": {}}
    assert "required" not in fixed
