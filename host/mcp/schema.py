"""MCP input schemas to OpenAI function tools, repaired where OpenAI-compatible servers refuse them.

Fixes: a missing or non-object top level, missing `properties`, `$schema`/`$id` keys, arrays without
`items`, and top-level `anyOf`/`oneOf`/`allOf`. Pure; never mutates its input.
"""

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the openai package is slow to import and only its TypedDict is needed here
    from openai.types.chat import ChatCompletionToolParam


_COMBINATORS = ("anyOf", "oneOf", "allOf")
_DROPPED_KEYS = ("$schema", "$id")


def openai_tool(name: str, description: str, input_schema: dict[str, Any]) -> "ChatCompletionToolParam":
    """The `{"type": "function", ...}` entry the chat-completions API takes."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": function_parameters(input_schema)},
    }


def function_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema for function parameters: an object with properties, every array with items."""
    result = copy.deepcopy(schema) if isinstance(schema, dict) else {}
    for key in _DROPPED_KEYS:
        result.pop(key, None)
    result = _flatten_top_combinators(result)
    result["type"] = "object"
    if not isinstance(result.get("properties"), dict):
        result["properties"] = {}
    required = result.get("required")
    if required is not None and not isinstance(required, list):
        result.pop("required")
    _repair(result)
    return result


def _flatten_top_combinators(schema: dict[str, Any]) -> dict[str, Any]:
    """Merge top-level alternatives into one object: all properties, required only where every branch agrees."""
    for key in _COMBINATORS:
        branches = schema.pop(key, None)
        if not isinstance(branches, list):
            continue
        objects = [branch for branch in branches if isinstance(branch, dict)]
        properties: dict[str, Any] = dict(schema.get("properties") or {})
        required_sets: list[set[str]] = []
        for branch in objects:
            properties.update(branch.get("properties") or {})
            required_sets.append(set(branch.get("required") or []))
        required = set(schema.get("required") or [])
        if required_sets:
            joined = set.union(*required_sets) if key == "allOf" else set.intersection(*required_sets)
            required |= joined
        schema["properties"] = properties
        if required:
            schema["required"] = sorted(required)
        if key != "allOf" and len(objects) > 1:
            note = "Accepts one of several argument shapes; give only the arguments of one."
            schema["description"] = f"{schema['description']} {note}" if schema.get("description") else note
    return schema


def _repair(node: Any) -> None:
    """Walk every subschema: arrays get `items`, nested `$schema` keys go."""
    if isinstance(node, list):
        for item in node:
            _repair(item)
        return
    if not isinstance(node, dict):
        return
    node.pop("$schema", None)
    kinds = node.get("type")
    is_array = kinds == "array" or (isinstance(kinds, list) and "array" in kinds)
    if is_array and "items" not in node and "prefixItems" not in node:
        node["items"] = {}
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            for subschema in value.values():
                _repair(subschema)
        elif key not in ("enum", "const", "default", "examples", "required"):
            _repair(value)
