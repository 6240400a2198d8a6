"""The generation version changes with whatever plays the model's part."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.llm import LLMConfig
from pipeline.tasks import TASKS
from pipeline.tasks.common import generate


def test_edited_offline_rule_gives_a_new_version(monkeypatch: pytest.MonkeyPatch) -> None:
    task = TASKS["auditorybench-animal"]
    prompts = {"auditorybench/animal": "v1"}
    config = LLMConfig.from_env(backend="offline")
    before = generate.generation_version(task, prompts, config, seed=0)
    assert generate.generation_version(task, prompts, config, seed=0) == before

    monkeypatch.setattr(generate, "get_rule", lambda name: SimpleNamespace(fingerprint="edited"))
    assert generate.generation_version(task, prompts, config, seed=0) != before


def test_endpoint_versions_do_not_depend_on_offline_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    task = TASKS["auditorybench-animal"]
    prompts = {"auditorybench/animal": "v1"}
    config = LLMConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="m")
    before = generate.generation_version(task, prompts, config, seed=0)
    monkeypatch.setattr(generate, "get_rule", lambda name: SimpleNamespace(fingerprint="edited"))
    assert generate.generation_version(task, prompts, config, seed=0) == before
    assert generate.generation_version(task, prompts, config, seed=1) != before
