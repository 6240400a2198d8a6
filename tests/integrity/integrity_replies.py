"""Replies of the scripted OpenAI-compatible server used by the integrity tests."""

from __future__ import annotations

from typing import Any


def schema_instance(schema: dict[str, Any]) -> Any:
    """A minimal value satisfying a template's JSON schema (objects, arrays, enums, ...)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return schema_instance(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: schema_instance(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        count = max(1, schema.get("minItems", 1))
        return [schema_instance(schema.get("items", {"type": "string"})) for _ in range(count)]
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "null":
        return None
    return "a steady low hum"


def schema_reply(request: dict[str, Any], count: int) -> Any:
    response_format = request.get("response_format") or {}
    schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    return schema_instance(schema)
