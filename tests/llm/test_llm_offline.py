"""Offline backend: registered rules, same validation and recording path, model offline-rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ForgeError
from pipeline.llm import GenerationEngine, LLMConfig, LLMRequest, PromptLibrary
from pipeline.llm import offline as offline_module
from pipeline.llm.offline import offline_rule
from pipeline.storage import Warehouse

PROMPTS = Path(__file__).parent / "prompts"


@pytest.fixture
def animal_rule() -> Iterator[None]:
    @offline_rule("demo/animal")
    def rule(variables: dict[str, Any]) -> dict[str, Any]:
        if variables["title"] == "explode":
            raise KeyError("no such animal")
        if variables["title"] == "bad":
            return {"decline": "maybe"}
        word = variables["tags"][0] if variables["tags"] else "animal"
        return {
            "decline": False,
            "sentence": f"{variables['title']} is the sound a [MASK] makes.",
            "answer": word,
        }

    yield
    offline_module.unregister("demo/animal")


def requests() -> list[LLMRequest]:
    titles = ["Woof", "explode", "bad", "Meow"]
    tags = [["dog"], [], [], ["cat"]]
    return [
        LLMRequest(
            item_key=f"item-{i}",
            prompt="demo/animal",
            variables={"title": title, "description": "d", "tags": tag},
        )
        for i, (title, tag) in enumerate(zip(titles, tags, strict=True))
    ]


def engine(warehouse: Warehouse, run_id: str = "r1") -> GenerationEngine:
    return GenerationEngine(
        warehouse, PromptLibrary.load(base_dir=PROMPTS), LLMConfig.from_env(), run_id
    )


def test_offline_rules_fill_the_schema_and_are_recorded(
    warehouse: Warehouse, animal_rule: None
) -> None:
    results = engine(warehouse).run(requests())
    assert [(r.status, r.model, r.backend) for r in results] == [
        ("ok", "offline-rules", "offline"),
        ("invalid_output", "offline-rules", "offline"),
        ("invalid_output", "offline-rules", "offline"),
        ("ok", "offline-rules", "offline"),
    ]
    assert results[0].parsed == {
        "decline": False,
        "sentence": "Woof is the sound a [MASK] makes.",
        "answer": "dog",
    }
    assert results[1].error == ("offline rule for 'demo/animal' raised KeyError: 'no such animal'")
    assert "decline: Input should be a valid boolean" in (results[2].error or "")
    rows = warehouse.rows(
        "SELECT item_key, status, model, backend, origin, response_format, attempts "
        "FROM llm_calls ORDER BY item_key"
    )
    assert [(r["status"], r["origin"], r["response_format"]) for r in rows] == [
        ("ok", "offline-rule", "offline"),
        ("invalid_output", "offline-rule", "offline"),
        ("invalid_output", "offline-rule", "offline"),
        ("ok", "offline-rule", "offline"),
    ]
    assert {r["model"] for r in rows} == {"offline-rules"}
    # Rerun: ok calls come from the cache; failed ones run again and are recorded again.
    again = engine(warehouse, "r2").run(requests())
    assert [r.cached for r in again] == [True, False, False, True]
    assert warehouse.rows("SELECT count(*) AS n FROM llm_calls WHERE run_id = 'r2'") == [{"n": 2}]


def test_missing_rule_is_a_clear_error(warehouse: Warehouse) -> None:
    with pytest.raises(ForgeError, match=r"no offline rule for prompt 'demo/compare'"):
        engine(warehouse).run(
            [LLMRequest(item_key="x", prompt="demo/compare", variables={"sources": ["a"]})]
        )


def test_from_env_chooses_the_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LLMConfig.from_env().backend == "offline"
    assert LLMConfig.from_env().model == "offline-rules"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@localhost:8000/v1?key=abc")
    with pytest.raises(ForgeError, match="no model: pass --model or set FORGE_LLM_MODEL"):
        LLMConfig.from_env()
    monkeypatch.setenv("FORGE_LLM_MODEL", "qwen2-72b")
    config = LLMConfig.from_env()
    assert (config.backend, config.model) == ("openai", "qwen2-72b")
    assert config.endpoint == "http://localhost:8000/v1"  # no credentials, no query
    assert LLMConfig.from_env(model="other").model == "other"
    assert LLMConfig.from_env(backend="offline").backend == "offline"
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-abcdefgh12345678")
    assert LLMConfig.from_env().base_url is None
    assert LLMConfig.from_env().backend == "openai"
    with pytest.raises(ForgeError, match="invalid LLM settings"):
        LLMConfig.from_env(concurrency=0)


class Recorder:
    """A progress listener that keeps every event (pipeline.progress)."""

    def __init__(self) -> None:
        self.steps: dict[int, dict[str, Any]] = {}

    def started(self, step_id: int, name: str, total: int | None, unit: str) -> None:
        self.steps[step_id] = {"name": name, "total": total, "unit": unit, "done": 0}

    def advanced(self, step_id: int, done: int, counters: dict[str, int]) -> None:
        self.steps[step_id].update(done=done, **counters)

    def finished(self, step_id: int) -> None:
        self.steps[step_id]["finished"] = True


def test_calls_report_progress_done_cached_failed(warehouse: Warehouse, animal_rule: None) -> None:
    from pipeline import progress

    recorder = Recorder()
    with progress.listening(recorder):
        engine(warehouse).run(requests())
        engine(warehouse, "r2").run(requests())
    first, second = recorder.steps.values()
    # 4 calls: 2 answered, 1 rule error, 1 invalid reply; the rerun answers the 2 from cache
    assert (first["unit"], first["total"], first["done"], first["failed"]) == ("call", 4, 4, 2)
    assert (second["total"], second["done"], second["cached"], second["failed"]) == (4, 4, 2, 2)
    assert first["finished"] and second["finished"]
