"""Replays Mellow's consumer rules (as stated in `pipeline.tasks.reasonaqa.release`) on a
`mellow-json` export of the sample corpora: file names, subtypes, the loaders' special
inputs, and the MCQ / entailment / binary metrics with gold and constant predictions.

The rules are re-stated here from reading `soham97/mellow` (branch `training`), not
imported: a change of our export that their code would read differently fails here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.tasks import export_task, generate_task

RELEASE_FIELDS = {
    "taskname",
    "filepath1",
    "filepath2",
    "caption1",
    "caption2",
    "input",
    "answer",
    "subtype",
}
# The loaders' exact special inputs, and the difference tier each belongs to.
DIFFERENCE_INPUTS = {
    "1": "explain the difference in few words",
    "2": "explain the difference in a sentence",
    "3": "explain the difference in detail",
}
CAPTION_INPUT = "caption first audio"
ENTAILMENT_CLASS = {"a": "entailment", "b": "neutral", "c": "contradiction"}
SUBTYPE_RE = re.compile(
    r"^(?:(?P<caption>AudioCaps|Clotho)"
    r"|(?P<mcq>AudioCaps-MCQ|Clotho-MCQ)"
    r"|(?P<detail>AudioCaps-Detail|Clotho-Detail)"
    r"|(?P<entail>ACE|CLE)"
    r"|(?P<binary>ClothoAQA)"
    r"|(?P<diff>ACD|CLD)-(?P<tier>[123]))\.json$"
)


def option_letter(text: str) -> str:
    """Mellow's option parse: the text before the first ')' if it is one of a-d, else a."""
    head = text.split(")")[0].lower()
    return head if len(head) == 1 and head in "abcd" else "a"


def mcq_accuracy(predictions: list[str], answers: list[str]) -> float:
    hits = sum(
        option_letter(p) == a.split(")")[0].lower()
        for p, a in zip(predictions, answers, strict=True)
    )
    return 100 * hits / len(answers)


def entailment_scores(predictions: list[str], answers: list[str]) -> dict[str, float]:
    """Accuracy overall and per class; a class absent from the answers cannot be scored."""
    gold = [option_letter(a) for a in answers]
    pred = [option_letter(p) for p in predictions]
    scores = {"ACC": sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)}
    for letter, name in ENTAILMENT_CLASS.items():
        members = [p for g, p in zip(gold, pred, strict=True) if g == letter]
        if not members:
            raise ZeroDivisionError(f"per-class accuracy: no {name} answers")
        scores[name] = sum(p == letter for p in members) / len(members)
    return scores


def binary_accuracy(predictions: list[str], answers: list[str]) -> float:
    hits = sum(a.lower() in p.lower() for p, a in zip(predictions, answers, strict=True))
    return 100 * hits / len(answers)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("mellow") / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "test-ingest", sample_audio_root(sample_audio_dir, source))
    generate_task(wh, "reasonaqa", LLMConfig.from_env(backend="offline"), "run-1")
    return wh


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, generated: Warehouse
) -> dict[str, list[dict[str, Any]]]:
    wh = generated
    out = tmp_path_factory.mktemp("mellow-json")
    export_task(wh, "reasonaqa", "mellow-json", out)
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(out.glob("*.json"))
    }


def by_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    matches = [(SUBTYPE_RE.match(item["subtype"]), item) for item in items]
    return [item for match, item in matches if match and match.group(kind)]


def test_release_file_names_fields_and_subtypes(
    exported: dict[str, list[dict[str, Any]]],
) -> None:
    assert sorted(exported) == ["test.json", "train.json", "val.json"]
    for name, items in exported.items():
        assert items, name
        for item in items:
            assert set(item) == RELEASE_FIELDS
            assert SUBTYPE_RE.match(item["subtype"]), (name, item["subtype"])
            two_clips = item["subtype"][:3] in ("ACD", "CLD")
            assert (item["filepath2"] != "") == two_clips
            assert (item["caption2"] != "") == two_clips
    seen = {item["subtype"] for items in exported.values() for item in items}
    for family in ("caption", "mcq", "detail", "entail", "binary", "diff"):
        assert any(SUBTYPE_RE.match(s).group(family) for s in seen), family  # type: ignore[union-attr]


def test_entailment_only_where_the_release_has_it(
    exported: dict[str, list[dict[str, Any]]],
) -> None:
    subtypes = {name: Counter(i["subtype"] for i in items) for name, items in exported.items()}
    assert subtypes["test.json"]["ACE.json"] > 0
    assert subtypes["train.json"]["ACE.json"] == subtypes["val.json"]["ACE.json"] == 0
    assert subtypes["train.json"]["CLE.json"] > 0


def test_difference_and_caption_inputs_hit_the_loaders_special_cases(
    exported: dict[str, list[dict[str, Any]]],
) -> None:
    for items in exported.values():
        for item in by_kind(items, "diff"):
            tier = SUBTYPE_RE.match(item["subtype"]).group("tier")  # type: ignore[union-attr]
            assert item["input"] == DIFFERENCE_INPUTS[tier]
        captions = by_kind(items, "caption")
        for item in captions:
            assert item["input"] == CAPTION_INPUT and item["answer"] == item["caption1"]
        # A clip's captions are consecutive (the captioning metric groups neighbours).
        runs = [item["filepath1"] for item in captions]
        starts = [path for index, path in enumerate(runs) if index == 0 or runs[index - 1] != path]
        assert len(starts) == len(set(runs))


def test_gold_answers_score_full_marks_and_a_constant_answer_scores_chance(
    exported: dict[str, list[dict[str, Any]]],
) -> None:
    everything = [item for items in exported.values() for item in items]
    mcq = [item["answer"] for item in by_kind(everything, "mcq")]
    entail = [item["answer"] for item in by_kind(everything, "entail")]
    binary = [item["answer"] for item in by_kind(everything, "binary")]
    assert len(mcq) >= 20 and len(entail) >= 20 and binary

    for item in by_kind(everything, "mcq") + by_kind(everything, "entail"):
        assert item["answer"] in item["input"]  # the answer is one of the offered options
        assert re.search(r" a\) .+ b\) .+ c\) .+ d\) .+$", item["input"])

    assert mcq_accuracy(mcq, mcq) == 100
    constant_mcq = mcq_accuracy(["a) whatever"] * len(mcq), mcq)
    assert 15 <= constant_mcq <= 35, constant_mcq  # four options: chance is 25 %

    gold = entailment_scores(entail, entail)
    assert gold == {"ACC": 1.0, "entailment": 1.0, "neutral": 1.0, "contradiction": 1.0}
    shares = Counter(option_letter(a) for a in entail)
    assert set(shares) == {"a", "b", "c"}
    constant = entailment_scores(["b) It is plausible"] * len(entail), entail)
    assert constant["ACC"] == pytest.approx(shares["b"] / len(entail))
    assert 0.15 <= constant["ACC"] <= 0.5  # three classes: chance is a third
    assert (constant["entailment"], constant["neutral"]) == (0.0, 1.0)

    assert binary_accuracy(binary, binary) == 100
    assert binary_accuracy(["yes"] * len(binary), binary) < 100


def test_pengi_jsonl_frames_every_item_with_a_pengi_template(
    generated: Warehouse, tmp_path: Path
) -> None:
    paths = export_task(generated, "reasonaqa", "pengi-jsonl", tmp_path)
    assert sorted(p.name for p in paths) == [
        "pengi_dev.jsonl",
        "pengi_test.jsonl",
        "pengi_train.jsonl",
    ]
    records = [json.loads(line) for p in paths for line in p.read_text().splitlines()]
    rows = {
        r["item_id"]: r
        for r in generated.rows(
            "SELECT * FROM items_current WHERE task = 'reasonaqa' AND validation_status = 'valid'"
        )
    }
    assert len(records) == len(rows)
    for record in records:
        row = rows[record["key"]]
        assert set(record) == {"key", "task", "template", "audio", "prompt", "target"}
        assert record["target"] == row["answer"] and record["audio"]
        if row["subtask"] == "caption":
            assert record["prompt"] == "generate audio caption"
        else:
            assert record["prompt"] == "question: " + row["input"]
        two_clips = len(row["clip_ids"]) == 2
        assert isinstance(record["audio"], list) == two_clips
