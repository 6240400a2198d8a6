"""Prompt rendering and generation versions: an edited prompt writes beside, never over."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.config import default_prompts_dir
from pipeline.llm import LLMConfig, PromptLibrary
from pipeline.storage import Warehouse
from pipeline.tasks import generate_task


def test_categorize_prompt_renders_exactly() -> None:
    template = PromptLibrary.load().get("auditorybench/categorize")
    text = template.render(
        {
            "title": "Dog barking {{ 7*7 }}",
            "tags": ["dog", "bark"],
            "description": "A dog.",
            "captions": ["A dog barks.", "Woof."],
        }
    )
    assert text.startswith(
        "Title: Dog barking {{ 7*7 }}\nTags: dog, bark\nDescription: A dog.\nCaptions:\n"
        "- A dog barks.\n- Woof.\n\nGive the main sound source of this recording"
    )
    assert text.rstrip().endswith('Reply with JSON: {"decline": false, "category": "..."}')


def test_an_edited_prompt_is_a_new_version_beside_the_old(
    sample_warehouse: Warehouse, tmp_path: Path
) -> None:
    config = LLMConfig.from_env()
    first = generate_task(sample_warehouse, "auditorybench-animal", config, "r1", splits=["test"])
    override = tmp_path / "prompts" / "auditorybench"
    override.mkdir(parents=True)
    source = default_prompts_dir() / "auditorybench" / "animal.j2"
    shutil.copy(source, override / "animal.j2")
    with open(override / "animal.j2", "a", encoding="utf-8") as handle:
        handle.write("Keep the sentence short.\n")
    second = generate_task(
        sample_warehouse,
        "auditorybench-animal",
        config,
        "r2",
        prompts_override=tmp_path / "prompts",
        splits=["test"],
    )
    assert second.generation_version != first.generation_version
    versions = sample_warehouse.rows(
        "SELECT generation_version, bool_or(is_current) AS current, count(*) AS n FROM items "
        "WHERE task = 'auditorybench-animal' GROUP BY 1 ORDER BY 1"
    )
    assert {(r["generation_version"], r["current"]) for r in versions} == {
        (first.generation_version, False),
        (second.generation_version, True),
    }
    assert versions[0]["n"] == versions[1]["n"] == first.items
