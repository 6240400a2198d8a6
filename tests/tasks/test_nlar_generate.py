"""NLAR end to end on the sample Clotho-AQA clips: offline rules and a scripted server."""

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
from pipeline.storage.schema import table
from pipeline.tasks import export_task, generate_task, report_task
from pipeline.tasks.common.export import export_rows
from pipeline.tasks.common.validators import DUPLICATE_EXACT
from pipeline.tasks.nlar import labels
from pipeline.tasks.nlar.acoustic import FEATURE_MISSING
from pipeline.tasks.nlar.acoustic import KIND as ACOUSTIC
from pipeline.tasks.nlar.export import nlar_item, read_nlar_json
from pipeline.tasks.nlar.questions import (
    ANSWER_MISMATCH,
    ANSWER_NOT_IN_SET,
    EVENT_NOT_NAMED,
    ORDER_REFERENCE,
    SLOT_MISSING,
)
from pipeline.tasks.nlar.task import NLAREventRecord

TASK = "nlar"


def offline() -> LLMConfig:
    return LLMConfig.from_env(backend="offline")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path) -> Warehouse:
    """The sample Clotho-AQA clips generated once for this module's checks."""
    wh = Warehouse(tmp_path_factory.mktemp("nlar") / "warehouse")
    source = "clotho-aqa"
    audio_root = sample_audio_root(sample_audio_dir, source)
    ingest_source(wh, source, SAMPLE_PATHS[source], "test-ingest", audio_root)
    generate_task(wh, TASK, offline(), "run-1")
    return wh


def items(wh: Warehouse, where: str = "TRUE", params: list[Any] | None = None) -> list[dict]:
    return wh.rows(
        f"SELECT * FROM items_current WHERE task = 'nlar' AND {where} ORDER BY item_id",
        params or [],
    )


def test_event_record_matches_its_ddl() -> None:
    assert list(NLAREventRecord.model_fields) == table("nlar_events").columns


def test_pairs_stay_inside_one_split_and_test_pairs_use_test_clips(generated: Warehouse) -> None:
    rows = items(generated)
    assert rows and {r["split"] for r in rows} == {"train", "dev", "test"}
    clips = {
        c["clip_id"]: c for c in generated.rows("SELECT * FROM clips WHERE source = 'clotho-aqa'")
    }
    for row in rows:
        assert len(row["clip_ids"]) == 2 and row["clip_ids"][0] != row["clip_ids"][1]
        assert {clips[c]["split"] for c in row["clip_ids"]} == {row["split"]}
        if row["split"] == "test":
            assert {clips[c]["source_split"] for c in row["clip_ids"]} == {"test"}
    report = report_task(generated, TASK)
    assert report.cross_split_duplicates == 0
    section = report.markdown().split("NLAR answers by question kind")[1]
    independent = len(items(generated, "validation_status = 'valid'")) // 2
    assert f"independent items: {independent} of {2 * independent}" in section
    assert "families: acoustic" in section and "frequency" in section and "presence" in section


def test_every_valid_item_has_its_swapped_twin(generated: Warehouse) -> None:
    rows = items(generated, "validation_status = 'valid'")
    twins = {
        json.loads(r["facts"])["twin_of"]: r for r in rows if json.loads(r["facts"])["swapped"]
    }
    originals = [r for r in rows if not json.loads(r["facts"])["swapped"]]
    assert originals and len(rows) == 2 * len(originals)
    for row in originals:
        facts = json.loads(row["facts"])
        assert facts["independent"] is True and facts["twin_of"] is None
        twin = twins[row["item_id"]]
        assert twin["clip_ids"] == list(reversed(row["clip_ids"]))
        assert twin["answer"] == labels.swap_answer(facts["kind"], row["answer"])
        assert json.loads(twin["facts"])["independent"] is False
        if facts["kind"] in ("which_contains", ACOUSTIC) and row["answer"] == "first":
            assert twin["answer"] == "second"
        assert row["answer"] == facts["expected_answer"]
        assert labels.answer_in_set(facts["kind"], row["answer"])


def test_answers_follow_the_annotations(generated: Warehouse) -> None:
    """Spot checks against the sample CSVs (park_children: dog barks twice at the end)."""
    rows = items(generated, "split = 'test' AND validation_status = 'valid'")
    for row in rows:
        facts = json.loads(row["facts"])
        first, second = (facts["evidence"][k] for k in ("first", "second"))
        if facts["event"] == "dog barking" and facts["kind"] == "which_contains":
            present = [e["present"] if e else None for e in (first, second)]
            if present == [True, False]:
                assert row["answer"] == "first"
        if facts["kind"] == "where_occurs" and facts["event"] == "dog barking":
            assert row["answer"] == "end"
    assert any(json.loads(r["facts"])["kind"] != "which_contains" for r in rows)


def test_event_descriptions_are_requested_once_per_event_name(generated: Warehouse) -> None:
    events = generated.rows("SELECT * FROM nlar_events ORDER BY clip_id, event")
    names = {e["event"] for e in events}
    assert len(events) > len(names)  # several clips share events (dog barking, ...)
    calls = generated.rows(
        "SELECT item_key, call_key FROM llm_calls WHERE prompt_name = 'nlar/describe_event'"
    )
    assert sorted(c["item_key"] for c in calls) == sorted(f"event:{n}" for n in names)
    by_name = {}
    for event in events:
        by_name.setdefault(event["event"], set()).add(event["description_call_key"])
    assert all(len(keys) == 1 for keys in by_name.values())
    dog = next(e for e in events if e["event"] == "dog barking")
    assert dog["description_status"] == "ok" and dog["description"].startswith("Short, sharp")
    assert json.loads(dog["evidence"])[0]["question"]
    before = len(generated.rows("SELECT * FROM llm_calls"))
    generate_task(generated, TASK, offline(), "run-2")
    assert len(generated.rows("SELECT * FROM llm_calls")) == before  # all from the cache


def test_nlar_json_round_trips(generated: Warehouse, tmp_path: Path) -> None:
    paths = export_task(generated, TASK, "nlar-json", tmp_path)
    assert sorted(p.name for p in paths) == ["nlar_dev.json", "nlar_test.json", "nlar_train.json"]
    rows = export_rows(generated, TASK)
    parsed = {item.id: item for path in paths for item in read_nlar_json(path)}
    assert parsed == {r["item_id"]: nlar_item(r) for r in rows}
    sample = next(iter(parsed.values()))
    assert sample.audio_path1 and sample.audio_path1.endswith(".wav")
    assert sample.answer_type in ("clip-choice", "yes-no", "position", "count")
    raw = json.loads(paths[0].read_text())
    assert set(raw[0]) == set(type(sample).model_fields)
    everything = list(parsed.values())
    assert {i.question_family for i in everything} == {"presence", "frequency", "acoustic"}
    acoustic = [i for i in everything if i.question_type == ACOUSTIC]
    assert acoustic and all(i.feature and i.feature_support for i in acoustic)
    assert all(i.feature is None for i in everything if i.question_type != ACOUSTIC)
    for item in everything:
        assert item.independent is (not item.swapped)
        assert (item.twin_of in parsed) if item.swapped else item.twin_of is None


def test_annotation_ties_are_recorded_as_rejects(warehouse: Warehouse, tmp_path: Path) -> None:
    folder = tmp_path / "aqa"
    folder.mkdir()
    rows = ["file_name,QuestionText,answer,confidence"]
    for name in ("a.wav", "b.wav"):
        rows += [f"{name},Is a dog barking?,{a},yes" for a in ("yes", "yes", "no")]
        rows += [f"{name},Is it raining?,{a},yes" for a in ("yes", "no", "maybe")]
    (folder / "clotho_aqa_val.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    ingest_source(warehouse, "clotho-aqa", folder, "ingest", tmp_path)
    summary = generate_task(warehouse, TASK, offline(), "run-1")
    rejects = warehouse.rows(
        "SELECT reason, record_id FROM rejects WHERE stage = 'generate' AND source = 'nlar' "
        "ORDER BY record_id"
    )
    assert rejects == [
        {"reason": "majority_tie", "record_id": "clotho-aqa:a.wav"},
        {"reason": "majority_tie", "record_id": "clotho-aqa:b.wav"},
    ]
    assert summary.notes["rejects"] == {"majority_tie": 2}
    answers = {(r["subtask"], r["answer"]) for r in items(warehouse)}
    # Both clips bark, so which feature is stronger cannot be told: acoustic is unclear.
    assert answers == {("which_contains", "both"), ("both_contain", "yes"), (ACOUSTIC, "unclear")}


# ---- scripted OpenAI-compatible server --------------------------------------------------

_SLOT_RE = re.compile(r'^(\d+)\. .* Event: "(.*)"\. Answer set: .*\.$', re.MULTILINE)


def nlar_script(request: dict[str, Any], count: int) -> dict[str, Any]:
    """Every reply entry breaks one check (slot 3 only when its label is not unclear)."""
    name = request["response_format"]["json_schema"]["name"]
    content = request["messages"][-1]["content"]
    if name == "nlar_describe_event":
        return {"decline": False, "description": "A sound heard in the recordings."}
    assert name == "nlar_qa"
    qa = []
    for slot, event in _SLOT_RE.findall(content):
        index = int(slot)
        question = {
            0: "Which recording is louder overall?",
            1: f"Is the first {event} louder than the others?",
            2: f"Is there {event} in them?",
            3: f"What about {event} in the two recordings?",
        }.get(index)
        if question is not None:  # slot 4 is left out on purpose
            answer = "perhaps" if index == 2 else "unclear"
            qa.append({"slot": index, "question": question, "answer": answer, "feature": ""})
    return {"decline": False, "qa": qa}


def test_scripted_server_answers_are_checked_against_the_annotations(
    sample_warehouse: Warehouse,
) -> None:
    with ScriptedServer(nlar_script) as server:
        config = LLMConfig(
            backend="openai", base_url=server.base_url, model=DEFAULT_MODEL, max_retries=0
        )
        generate_task(sample_warehouse, TASK, config, "run-scripted")
    originals = [r for r in items(sample_warehouse) if not json.loads(r["facts"])["swapped"]]
    seen_slots, attempts = set(), set()
    for row in originals:
        facts = json.loads(row["facts"])
        slot, reasons = facts["slot"], row["validation_reasons"]
        seen_slots.add(slot)
        attempts.add(facts["attempt"])
        assert row["model"] == DEFAULT_MODEL
        acoustic = facts["kind"] == ACOUSTIC
        if slot == 0:
            assert (FEATURE_MISSING if acoustic else EVENT_NOT_NAMED) in reasons
        elif slot == 1:
            assert ORDER_REFERENCE in reasons
        elif slot == 2:
            assert ANSWER_NOT_IN_SET in reasons
        elif slot == 3:
            if acoustic:
                assert reasons == [FEATURE_MISSING]
            else:
                expected = facts["expected_answer"]
                if expected == "unclear":  # passes, unless the pair already has the question
                    assert reasons in ([], [DUPLICATE_EXACT])
                else:
                    assert reasons == [ANSWER_MISMATCH]
        else:
            assert reasons == [SLOT_MISSING]
    assert seen_slots == {0, 1, 2, 3, 4}
    assert attempts == {0, 1, 2}  # fewer than five pass, so every pair is asked three times
    swapped = [r for r in items(sample_warehouse) if json.loads(r["facts"])["swapped"]]
    valid_originals = [r for r in originals if r["validation_status"] == "valid"]
    assert len(swapped) == len(valid_originals) > 0
