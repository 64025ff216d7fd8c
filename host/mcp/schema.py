"""MCP input schemas to OpenAI function parameters, repaired where OpenAI-compatible servers refuse them.

Fixes: a missing or non-object top level, missing `properties`, `$schema`/`$id` keys, arrays without
`items`, boolean subschemas, and top-level `anyOf`/`oneOf`/`allOf` (local `$ref` branches resolved). Pure;
never mutates its input; raises TypeError or ValueError on a schema it cannot make sense of.
"""

import copy
from typing import Any, TypeGuard

_COMBINATORS = ("anyOf", "oneOf", "allOf")
_DROPPED_KEYS = ("$schema", "$id")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_VALUE_KEYS = ("enum", "const", "default", "examples", "required")


def function_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema for function parameters: an object with properties, every array with items."""
    result = copy.deepcopy(schema) if isinstance(schema, dict) else {}
    for key in _DROPPED_KEYS:
        result.pop(key, None)
    result = _flatten_top_combinators(result)
    result["type"] = "object"
    if not isinstance(result.get("properties"), dict):
        result["properties"] = {}
    if not _is_name_list(result.get("required")):
        result.pop("required", None)
    _repair(result)
    return result


def _flatten_top_combinators(schema: dict[str, Any]) -> dict[str, Any]:
    """Merge top-level alternatives into one object: all properties, required only where every branch agrees."""
    for key in _COMBINATORS:
        branches = schema.pop(key, None)
        if not isinstance(branches, list):
            continue
        objects = [_resolve(branch, schema) for branch in branches]
        objects = [branch for branch in objects if isinstance(branch, dict)]
        properties: dict[str, Any] = dict(schema.get("properties") or {})
        required_sets: list[set[str]] = []
        for branch in objects:
            branch_properties = branch.get("properties")
            if isinstance(branch_properties, dict):
                properties.update(branch_properties)
            branch_required = branch.get("required")
            required_sets.append(set(branch_required) if _is_name_list(branch_required) else set())
        required = set(schema.get("required") or []) if _is_name_list(schema.get("required")) else set()
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


def _resolve(branch: Any, root: dict[str, Any]) -> Any:
    """A branch that is a local `$ref` (`#/$defs/Name`), replaced by what it points at."""
    if not (isinstance(branch, dict) and isinstance(branch.get("$ref"), str)):
        return branch
    reference: str = branch["$ref"]
    for prefix in ("#/$defs/", "#/definitions/"):
        definitions = root.get(prefix.split("/")[1])
        name = reference.removeprefix(prefix)
        if reference.startswith(prefix) and isinstance(definitions, dict) and name in definitions:
            return definitions[name]
    return branch


def _is_name_list(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _repair(node: Any) -> None:
    """Walk every subschema: arrays get `items`, boolean subschemas become objects, `$schema` keys go."""
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
        if key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, subschema in value.items():
                if isinstance(subschema, bool):
                    value[name] = {} if subschema else {"not": {}}
                else:
                    _repair(subschema)
        elif key not in _VALUE_KEYS:
            _repair(value)
