"""Fixtures of the orchestration tests: a scripted OpenAI-compatible server whose replies
satisfy each template's JSON schema, and counters of audio decodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.llm.scripted_server import ScriptedServer


def schema_instance(schema: dict[str, Any]) -> Any:
    """A minimal value that satisfies a JSON schema of the kind the templates use
    (objects, arrays, enums, strings, numbers, booleans): the server's reply content."""
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
        properties = schema.get("properties", {})
        return {name: schema_instance(sub) for name, sub in properties.items()}
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


@pytest.fixture
def schema_replies() -> Callable[[dict[str, Any], int], Any]:
    """`schema_reply` for tests that start their own server (e.g. on a chosen port). A
    fixture, not an import: `from conftest import ...` finds another folder's conftest
    when several test folders run together."""
    return schema_reply


@pytest.fixture
def llm_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(schema_reply) as server:
        yield server


@pytest.fixture
def decode_counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every audio decode (pipeline.audio.io.decode_audio) appends where it read from."""
    from pipeline.audio import io

    calls: list[str] = []
    original = io.decode_audio

    def counting(data: bytes, where: str) -> Any:
        calls.append(where)
        return original(data, where)

    monkeypatch.setattr(io, "decode_audio", counting)
    return calls
