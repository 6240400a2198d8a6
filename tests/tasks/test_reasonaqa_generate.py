"""ReasonAQA end to end on the sample corpora: offline rules and a scripted local server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.llm.scripted_server import DEFAULT_MODEL, ScriptedServer
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.tasks import export_task, generate_task, report_task
from pipeline.tasks.common.export import export_rows
from pipeline.tasks.common.sound_groups import compute_sound_groups, write_sound_groups
from pipeline.tasks.reasonaqa import rules
from pipeline.tasks.reasonaqa.drafts import (
    ANSWER_NOT_GROUNDED,
    COPIES_CAPTION,
    DISTRACTOR_IN_CAPTIONS,
    NOT_ONE_SENTENCE,
)
from pipeline.tasks.reasonaqa.export import caption_groups_together, mellow_item, read_mellow_json
from pipeline.tasks.reasonaqa.task import AUDIO_SPLIT_CONFLICT, MAJORITY_TIE, NOT_YES_NO

TASK = "reasonaqa"
FAMILIES = {
    "caption",
    "mcq",
    "detail",
    "entailment",
    "binary",
    "difference-short",
    "difference-sentence",
    "difference-detailed",
}


def offline() -> LLMConfig:
    return LLMConfig.from_env(backend="offline")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path) -> Warehouse:
    """The sample corpora generated once for this module's read-only checks."""
    wh = Warehouse(tmp_path_factory.mktemp("reasonaqa") / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "test-ingest", sample_audio_root(sample_audio_dir, source))
    generate_task(wh, TASK, offline(), "run-1")
    # the stored groups behind the `sound_groups` view (the build's grouping stage)
    write_sound_groups(wh, compute_sound_groups(wh)[1], "test-groups")
    return wh


def items(wh: Warehouse, where: str = "TRUE", params: list[Any] | None = None) -> list[dict]:
    return wh.rows(
        f"SELECT * FROM items_current WHERE task = 'reasonaqa' AND {where} ORDER BY item_id",
        params or [],
    )


def test_offline_run_builds_every_family_with_honest_lineage(generated: Warehouse) -> None:
    rows = items(generated, "validation_status = 'valid'")
    assert {r["subtask"] for r in rows} == FAMILIES
    for row in rows:
        if row["subtask"] in ("binary", "caption"):
            assert row["model"] == "template" and row["prompt_name"] is None
        else:
            assert row["model"] == "offline-rules" and row["llm_call_key"]
            assert row["prompt_name"].startswith("reasonaqa/")
        assert row["answer"] and row["input"]
    report = report_task(generated, TASK)
    assert report.cross_split_duplicates == 0
    assert all(s.unlabeled_valid == 0 for s in report.splits)


def test_no_clip_leaks_across_splits(generated: Warehouse) -> None:
    per_clip = """
        SELECT i.split AS item_split, c.split AS clip_split, c.source_split, c.clip_id
        FROM (SELECT split, unnest(clip_ids) AS clip_id FROM items_current WHERE task = ?) i
        JOIN clips c USING (clip_id)
    """
    rows = generated.rows(per_clip, [TASK])
    assert rows
    leaking = generated.rows(
        f"SELECT clip_id FROM ({per_clip}) GROUP BY clip_id HAVING count(DISTINCT item_split) > 1",
        [TASK],
    )
    assert leaking == []
    # AudioCaps test / Clotho evaluation clips are protected: they only ever feed test
    assert all(r["item_split"] == "test" for r in rows if r["clip_split"] == "test")
    # a clip leaves its own split only to follow its sound group (the same sound elsewhere)
    moved = {r["clip_id"] for r in rows if r["item_split"] != r["clip_split"]}
    grouped = {
        r["clip_id"]
        for r in generated.rows(
            "SELECT clip_id FROM sound_groups WHERE sound_group IN "
            "(SELECT sound_group FROM sound_groups GROUP BY 1 HAVING count(*) > 1)"
        )
    }
    assert moved <= grouped
    assert generated.rows("SELECT * FROM leakage WHERE task = ?", [TASK]) == []


def test_mcq_letters_are_balanced_and_items_are_well_formed(generated: Warehouse) -> None:
    mcqs = items(generated, "subtask = 'mcq' AND validation_status = 'valid'")
    assert len(mcqs) >= 20
    by_split: dict[str, dict[str, int]] = {}
    for row in mcqs:
        letter = row["answer"][0]
        by_split.setdefault(row["split"], dict.fromkeys("abcd", 0))[letter] += 1
        options = row["options"]
        assert [o[:3] for o in options] == ["a) ", "b) ", "c) ", "d) "]
        assert len({o[3:].lower() for o in options}) == 4
        assert row["answer"] in options
        assert row["input"].endswith(" ".join(options))
        facts = json.loads(row["facts"])
        captions = facts["clips"][0]["captions"]
        assert row["answer"][3:] == facts["correct"]
        for distractor in facts["distractors"]:
            assert not rules.mentioned_in_captions(distractor, captions)
    for split, letters in by_split.items():
        assert max(letters.values()) - min(letters.values()) <= 1, (split, letters)


def test_focus_is_recorded_and_spread_evenly(generated: Warehouse) -> None:
    for family in ("mcq", "detail"):
        for split in ("train", "dev", "test"):
            focus = [
                r["focus"] for r in items(generated, "subtask = ? AND split = ?", [family, split])
            ]
            counts = [focus.count(f) for f in rules.FOCUSES]
            assert max(counts) - min(counts) <= 1, (family, split, counts)


def test_rerun_is_idempotent_and_served_from_the_cache(generated: Warehouse) -> None:
    ids = [r["item_id"] for r in items(generated)]
    calls = generated.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"]
    summary = generate_task(generated, TASK, offline(), "run-2")
    assert [r["item_id"] for r in items(generated)] == ids
    assert generated.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"] == calls
    assert summary.items == len(ids)


def test_mellow_json_round_trips(generated: Warehouse, tmp_path: Path) -> None:
    paths = export_task(generated, TASK, "mellow-json", tmp_path)
    assert sorted(p.name for p in paths) == ["test.json", "train.json", "val.json"]
    rows = export_rows(generated, TASK)
    parsed = [item for path in sorted(paths) for item in read_mellow_json(path)]
    expected = [
        mellow_item(r)
        for split in ("test", "train", "dev")
        for r in caption_groups_together([r for r in rows if r["split"] == split])
    ]
    assert parsed == expected
    path_re = re.compile(
        r"^(AudioCapsLarger/(train|val|test)/Y[\w-]+\.wav"
        r"|ClothoV21/(development|validation|evaluation)/[^/]+"
        r"|ClothoAQA/[^/]+)$"
    )
    for item in parsed:
        assert path_re.match(item.filepath1)
        assert (item.filepath2 != "") == bool(re.match(r"^(AC|CL)D-[123]\.json$", item.subtype))
        assert item.filepath2 == "" or path_re.match(item.filepath2)
        assert item.taskname in ("audiocaps", "clothov21")
    mcq = next(i for i in parsed if i.subtype.endswith("-MCQ.json"))
    assert re.search(r" a\) .+ b\) .+ c\) .+ d\) .+$", mcq.input)
    assert re.match(r"^[abcd]\) ", mcq.answer)


def write_aqa(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file_name,QuestionText,answer,confidence"]
    lines += [f"{f},{q},{a},yes" for f, q, a in rows]
    (folder / "clotho_aqa_train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_binary_items_use_the_majority_and_record_ties(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    aqa = write_aqa(
        tmp_path / "aqa",
        [
            ("a.wav", "Is a dog barking?", "yes"),
            ("a.wav", "Is a dog barking?", "no"),
            ("a.wav", "Is a dog barking?", "yes"),
            ("a.wav", "Is it raining?", "yes"),
            ("a.wav", "Is it raining?", "no"),
            ("a.wav", "Is it raining?", "maybe"),
            ("a.wav", "When does the dog bark?", "end"),
            ("a.wav", "When does the dog bark?", "end"),
            ("a.wav", "When does the dog bark?", "end"),
        ],
    )
    ingest_source(warehouse, "clotho-aqa", aqa, "ingest", tmp_path)
    summary = generate_task(warehouse, TASK, offline(), "run-1")
    rows = items(warehouse)
    assert [(r["subtask"], r["input"], r["answer"]) for r in rows] == [
        ("binary", "Is a dog barking?", "yes")
    ]
    assert json.loads(rows[0]["facts"])["answers"] == ["yes", "no", "yes"]
    rejects = warehouse.rows(
        "SELECT reason, record_id, raw FROM rejects WHERE stage = 'generate' AND source = ? "
        "ORDER BY reason",
        [TASK],
    )
    assert [(r["reason"], r["record_id"]) for r in rejects] == [
        (MAJORITY_TIE, "clotho-aqa:a.wav"),
        (NOT_YES_NO, "clotho-aqa:a.wav"),
    ]
    assert "Is it raining?" in rejects[0]["raw"]
    assert summary.notes["rejects"] == {MAJORITY_TIE: 1, NOT_YES_NO: 1}


def test_aqa_audio_in_another_clotho_split_follows_the_clotho_split(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    """'Wind in trees.wav' is a Clotho validation (dev) file: as Clotho-AQA train it is the
    same sound, so its questions go to dev with it instead of putting the audio in two
    splits (the sound-group rule; nothing is left for the split-conflict refusal)."""
    aqa = write_aqa(
        tmp_path / "aqa",
        [
            *[("Wind in trees.wav", "Is the wind blowing?", "yes")] * 3,
            *[("other.wav", "Is the wind blowing?", "no")] * 3,
        ],
    )
    ingest_source(warehouse, "clotho", SAMPLE_PATHS["clotho"], "ingest", tmp_path)
    ingest_source(warehouse, "clotho-aqa", aqa, "ingest", tmp_path)
    generate_task(warehouse, TASK, offline(), "run-1")
    binary = {r["clip_ids"][0]: r["split"] for r in items(warehouse, "subtask = 'binary'")}
    assert binary == {"clotho-aqa:Wind in trees.wav": "dev", "clotho-aqa:other.wav": "train"}
    rejects = warehouse.rows(
        "SELECT record_id FROM rejects WHERE stage = 'generate' AND reason = ?",
        [AUDIO_SPLIT_CONFLICT],
    )
    assert rejects == []


# ---- scripted OpenAI-compatible server --------------------------------------------------


def _captions(request: dict[str, Any]) -> list[str]:
    content = request["messages"][-1]["content"]
    block = content.split("\n\n")[0]
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def reasonaqa_script(request: dict[str, Any], count: int) -> dict[str, Any]:
    name = request["response_format"]["json_schema"]["name"]
    if name == "reasonaqa_mcq":
        return {
            "decline": False,
            "question": "Which of these sounds can be heard in the recording?",
            "correct": "the main sound",
            "distractors": ["a dog barking", "rain falling", "a ringing bell"],
        }
    if name == "reasonaqa_detail":
        return {
            "decline": False,
            "question": "What is happening in this recording?",
            "answer": "A cat meows several times in a quiet room while nothing else happens.",
        }
    if name == "reasonaqa_difference":
        return {
            "decline": False,
            "short": "different sounds",
            "sentence": "The first has one sound. The second has another.",
            "detailed": "They differ.",
        }
    if name == "reasonaqa_entailment":
        return {
            "decline": False,
            "hypotheses": [
                {"hypothesis": _captions(request)[0], "label": "entailment"},
                {
                    "hypothesis": "The recording is silent from start to end.",
                    "label": "contradiction",
                },
            ],
        }
    raise AssertionError(f"unexpected prompt {name}")


def test_scripted_server_replies_are_validated(sample_warehouse: Warehouse) -> None:
    with ScriptedServer(reasonaqa_script) as server:
        config = LLMConfig(
            backend="openai", base_url=server.base_url, model=DEFAULT_MODEL, max_retries=0
        )
        generate_task(sample_warehouse, TASK, config, "run-scripted")
        sent = server.request_count
    wh = sample_warehouse
    llm_items = items(wh, "subtask NOT IN ('binary', 'caption')")
    assert sent > 0 and all(r["model"] == DEFAULT_MODEL for r in llm_items)

    def reasons(clip_id: str, subtask: str) -> list[list[str]]:
        return [
            r["validation_reasons"]
            for r in items(wh, "subtask = ? AND list_contains(clip_ids, ?)", [subtask, clip_id])
        ]

    dog, cat = "audiocaps:--4gqARaEJE_0", "audiocaps:-BIMKnb3tt4_0"
    assert reasons(dog, "mcq") == [[DISTRACTOR_IN_CAPTIONS]]  # "A dog barks ..."
    assert reasons(cat, "mcq") == [[]]  # a cat: none of the distractors is in its captions
    assert reasons(dog, "detail") == [[ANSWER_NOT_GROUNDED]]
    assert reasons(cat, "detail") == [[]]
    for row in items(wh, "subtask = 'difference-sentence'"):
        assert NOT_ONE_SENTENCE in row["validation_reasons"]
    for row in items(wh, "subtask = 'entailment'"):
        facts = json.loads(row["facts"])
        copied = facts["hypothesis"] == facts["clips"][0]["captions"][0]
        assert (COPIES_CAPTION in row["validation_reasons"]) == copied
    valid_mcq = items(wh, "subtask = 'mcq' AND validation_status = 'valid'")
    assert valid_mcq and all(r["answer"].endswith(") the main sound") for r in valid_mcq)
