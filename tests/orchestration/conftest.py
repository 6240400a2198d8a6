"""Fixtures of the orchestration tests: a scripted OpenAI-compatible server whose replies
satisfy each template's JSON schema, and counters of audio decodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pipeline.llm.scripted_server import ScriptedServer, schema_reply


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
