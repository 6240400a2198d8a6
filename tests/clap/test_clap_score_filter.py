"""Scoring items end to end on a tiny model, and every filter policy on injected scores."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from pipeline.audio.io import load_clip_audio
from pipeline.clap import NOT_CONFIGURED, ClapScorer
from pipeline.clap.filter import filter_task, make_policy, mark_unscored
from pipeline.clap.score import score_task, zero_shot
from pipeline.clap.tiny import build_tiny_hf_clap
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

VOCAB = ["bird", "cat", "cow", "dog"]


def item(item_id: str, task: str, clip_ids: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "task": task,
        "split": fields.pop("split", "train"),
        "clip_ids": clip_ids,
        "generation_version": "v1",
        "validation_status": fields.pop("validation_status", "valid"),
        "run_id": "gen",
        "created_at": utc_now(),
        **fields,
    }


def write_items(wh: Warehouse, task: str, items: list[dict[str, Any]]) -> None:
    wh.write_partition("item_records", f"task={task}/split=train/version=v1", items)


def write_scores(
    wh: Warehouse, task: str, scores: list[tuple[str, str, str | None, float | None]]
) -> None:
    """(item_id, role, clip_id, score) rows; primary = span*/answer/correct option given by role suffix '*'."""
    rows = []
    for item_id, role, clip_id, score in scores:
        primary = role.endswith("*")
        rows.append(
            {
                "item_id": item_id,
                "task": task,
                "clip_id": clip_id,
                "text": "t",
                "text_role": role.rstrip("*"),
                "is_primary": primary,
                "backend": "hf",
                "checkpoint": "injected",
                "crop_policy": "mean:10s:max6",
                "score": score,
                "unscored_reason": None if score is not None else "audio missing: file not found",
                "run_id": "score",
                "scored_at": utc_now(),
            }
        )
    wh.write_partition("clap_scores", f"task={task}/model=injected", rows)


def decisions(wh: Warehouse, task: str) -> dict[str, tuple[str, str]]:
    return {
        r["item_id"]: (r["filter_status"], r["filter_reason"])
        for r in wh.rows(
            "SELECT item_id, filter_status, filter_reason FROM items_current WHERE task = ?",
            [task],
        )
    }


def statuses(wh: Warehouse, task: str) -> dict[str, str]:
    return {k: v[0] for k, v in decisions(wh, task).items()}


@pytest.fixture
def detail_task(warehouse: Warehouse) -> Warehouse:
    """Five reasonaqa detail items on clips c1..c3, plus one with missing audio."""
    task = "reasonaqa"
    ids = ["i1", "i2", "i3", "i4", "i5", "i6"]
    clips = ["c1", "c1", "c1", "c2", "c3", "c4"]
    write_items(
        warehouse,
        task,
        [item(i, task, [c], subtask="detail", answer="a") for i, c in zip(ids, clips, strict=True)]
        + [item("bad", task, ["c1"], subtask="detail", validation_status="rejected")],
    )
    primary = [0.50, 0.40, 0.10, 0.30, 0.20, None]
    captions = {"c1": 0.35, "c2": 0.35, "c3": 0.10, "c4": None}
    rows: list[tuple[str, str, str | None, float | None]] = []
    for i, c, s in zip(ids, clips, primary, strict=True):
        rows += [(i, "answer*", c, s), (i, "caption", c, captions[c])]
    write_scores(warehouse, task, rows)
    return warehouse


def test_absolute_threshold(detail_task: Warehouse) -> None:
    summary = filter_task(detail_task, "reasonaqa", make_policy("absolute", threshold=0.3), "f1")
    assert (summary.kept, summary.dropped, summary.unscored) == (3, 2, 1)
    got = decisions(detail_task, "reasonaqa")
    assert {k: v[0] for k, v in got.items()} == {
        "i1": "kept",
        "i2": "kept",
        "i3": "dropped",
        "i4": "kept",
        "i5": "dropped",
        "i6": "unscored",
        "bad": "unscored",  # rejected items get no decision
    }
    assert got["i3"][1] == "score 0.100 < threshold 0.300"
    assert got["i6"][1] == "audio missing: file not found"
    assert summary.unscored_by_reason == {"audio missing": 1}


def test_relative_to_the_clip_caption(detail_task: Warehouse) -> None:
    filter_task(detail_task, "reasonaqa", make_policy("relative", margin=0.0), "f2")
    got = decisions(detail_task, "reasonaqa")
    assert statuses(detail_task, "reasonaqa") | {"bad": "-"} == {
        "i1": "kept",  # 0.50 vs caption 0.35
        "i2": "kept",
        "i3": "dropped",  # 0.10 vs 0.35
        "i4": "dropped",  # 0.30 vs 0.35
        "i5": "kept",  # 0.20 vs 0.10
        "i6": "unscored",
        "bad": "-",
    }
    assert got["i4"][1] == "answer minus caption -0.050 < margin 0.000"


def test_percentile_within_task(detail_task: Warehouse) -> None:
    summary = filter_task(detail_task, "reasonaqa", make_policy("percentile", percentile=40), "f3")
    # scores 0.1 .. 0.5: the 40th percentile is 0.26, so 0.3, 0.4, 0.5 stay.
    assert (summary.kept, summary.dropped, summary.unscored) == (3, 2, 1)
    assert decisions(detail_task, "reasonaqa")["i4"] == ("kept", "score 0.300 >= p40 0.260")


def test_topk_among_candidates_for_the_same_clip(detail_task: Warehouse) -> None:
    filter_task(detail_task, "reasonaqa", make_policy("topk", k=1), "f4")
    got = statuses(detail_task, "reasonaqa")
    assert [got[i] for i in ("i1", "i2", "i3", "i4", "i5", "i6")] == [
        "kept",
        "dropped",
        "dropped",
        "kept",
        "kept",
        "unscored",
    ]
    assert decisions(detail_task, "reasonaqa")["i2"][1].startswith("rank 2 of 3 candidates")


def test_refiltering_appends_and_the_latest_decision_wins(detail_task: Warehouse) -> None:
    filter_task(detail_task, "reasonaqa", make_policy("absolute", threshold=0.0), "r1")
    assert statuses(detail_task, "reasonaqa")["i3"] == "kept"
    filter_task(detail_task, "reasonaqa", make_policy("absolute", threshold=0.45), "r2")
    assert statuses(detail_task, "reasonaqa")["i3"] == "dropped"
    history = detail_task.rows(
        "SELECT policy_params, filter_status FROM item_filters WHERE item_id = 'i3' ORDER BY decided_at"
    )
    assert [h["filter_status"] for h in history] == ["kept", "dropped"]
    assert json.loads(history[1]["policy_params"]) == {"threshold": 0.45}
    with pytest.raises(ForgeError, match="unknown CLAP filter policy"):
        make_policy("loudest")


def test_task_rules(warehouse: Warehouse) -> None:
    # animal: answer must rank in the top-k of the vocabulary on its clip.
    write_items(
        warehouse,
        "auditorybench-animal",
        [
            item("a1", "auditorybench-animal", ["c1"], answer="dog", spans=["woof"]),
            item("a2", "auditorybench-animal", ["c2"], answer="cat", spans=["meow"]),
        ],
    )
    vocab_scores = {"c1": [0.1, 0.2, 0.3, 0.4], "c2": [0.4, 0.1, 0.3, 0.2]}  # bird cat cow dog
    rows = []
    for item_id, clip in (("a1", "c1"), ("a2", "c2")):
        rows.append((item_id, "span*", clip, 0.3))
        rows += [
            (item_id, f"vocab:{a}", clip, s) for a, s in zip(VOCAB, vocab_scores[clip], strict=True)
        ]
    write_scores(warehouse, "auditorybench-animal", rows)
    filter_task(warehouse, "auditorybench-animal", make_policy("task-rule", k=2), "t1")
    got = decisions(warehouse, "auditorybench-animal")
    assert got["a1"] == ("kept", "answer 'dog' ranks 1 of 4 (top-2 required)")
    assert got["a2"] == ("dropped", "answer 'cat' ranks 4 of 4 (top-2 required)")

    # pitch: each span above threshold on its own clip and higher there than on the other.
    task = "auditorybench-pitch"
    write_items(
        warehouse,
        task,
        [item(p, task, ["c1", "c2"], spans=["s1", "s2"]) for p in ("p1", "p2", "p3")]
        + [item("p4", task, [], spans=["violin", "tuba"], split="wiki")],
    )
    pitch = {"p1": (0.5, 0.4, 0.1, 0.2), "p2": (0.5, 0.2, 0.1, 0.1), "p3": (0.5, 0.4, 0.6, 0.1)}
    rows = []
    for p, (s1, s2, s1o, s2o) in pitch.items():
        rows += [(p, "span1*", "c1", s1), (p, "span2*", "c2", s2)]
        rows += [(p, "span1_other", "c2", s1o), (p, "span2_other", "c1", s2o)]
    write_scores(warehouse, task, rows)
    filter_task(warehouse, task, make_policy("task-rule", threshold=0.3), "t2")
    got = decisions(warehouse, task)
    assert got["p1"][0] == "kept"
    assert got["p2"] == ("dropped", "span2 0.200 < threshold 0.300")
    assert got["p3"] == ("dropped", "span1 scores 0.500 on its own clip <= 0.600 on the other")
    assert got["p4"][0] == "unscored"

    # reasonaqa MCQ: the correct option must beat every distractor.
    task = "reasonaqa"
    options = ["a) rain", "b) birds", "c) a car", "d) a dog"]
    write_items(
        warehouse,
        task,
        [
            item("m1", task, ["c1"], subtask="mcq", options=options, answer="b) birds"),
            item("m2", task, ["c1"], subtask="mcq", options=options, answer="c) a car"),
            item("m3", task, ["c1"], subtask="detail", answer="birds sing"),
        ],
    )
    option_scores = [0.1, 0.4, 0.3, 0.2]
    rows = []
    for mcq, correct in (("m1", "b"), ("m2", "c")):
        rows += [
            (mcq, f"option_{x}{'*' if x == correct else ''}", "c1", s)
            for x, s in zip("abcd", option_scores, strict=True)
        ]
    rows.append(("m3", "answer*", "c1", 0.5))
    write_scores(warehouse, task, rows)
    filter_task(warehouse, task, make_policy("task-rule"), "t3")
    got = decisions(warehouse, task)
    assert got["m1"][0] == "kept"
    assert got["m2"] == ("dropped", "correct option_c 0.300 <= distractor option_b 0.400")
    assert got["m3"][0] == "unscored" and "subtask 'detail'" in got["m3"][1]

    # nlar: presence claims must agree with CLAP at the threshold.
    task = "nlar"

    def facts(first: bool | None, second: bool | None) -> str:
        return json.dumps(
            {
                "event": "dog barking",
                "evidence": {"first": {"present": first}, "second": {"present": second}},
            }
        )

    write_items(
        warehouse,
        task,
        [
            item("n1", task, ["c1", "c2"], facts=facts(True, False)),
            item("n2", task, ["c1", "c2"], facts=facts(True, True)),
            item("n3", task, ["c1", "c2"], facts=facts(None, None)),
        ],
    )
    rows = []
    for n in ("n1", "n2", "n3"):
        rows += [(n, "event_first*", "c1", 0.45), (n, "event_second", "c2", 0.05)]
    write_scores(warehouse, task, rows)
    filter_task(warehouse, task, make_policy("task-rule", threshold=0.3), "t4")
    got = decisions(warehouse, task)
    assert got["n1"][0] == "kept"
    assert got["n2"][0] == "dropped" and "claimed present in the second clip" in got["n2"][1]
    assert got["n3"] == ("unscored", "no presence claim to check (presence not annotated)")


def test_no_checkpoint_marks_items_unscored_with_how_to(warehouse: Warehouse) -> None:
    write_items(warehouse, "reasonaqa", [item("x1", "reasonaqa", ["c1"], subtask="detail")])
    summary = filter_task(warehouse, "reasonaqa", None, "n1")
    assert summary.unscored == 1 and summary.policy == "task-rule"
    assert decisions(warehouse, "reasonaqa")["x1"] == ("unscored", NOT_CONFIGURED)
    assert "FORGE_CLAP_BACKEND" in NOT_CONFIGURED and "FORGE_CLAP_CHECKPOINT" in NOT_CONFIGURED
    mark_unscored(warehouse, "reasonaqa", "custom reason", "n2")
    assert decisions(warehouse, "reasonaqa")["x1"] == ("unscored", "custom reason")


# ---- end to end on a tiny random model ----------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> ClapScorer:
    return build_tiny_hf_clap(seed=1)


def test_score_task_end_to_end(sample_warehouse: Warehouse, scorer: ClapScorer) -> None:
    wh = sample_warehouse
    clips = wh.rows(
        "SELECT clip_id, audio_root, audio_path, captions FROM clips "
        "WHERE source = 'laion630k' ORDER BY clip_id LIMIT 3"
    )
    c1, c2, c3 = (c["clip_id"] for c in clips)
    write_items(
        wh,
        "auditorybench-pitch",
        [
            item("p1", "auditorybench-pitch", [c1, c2], spans=["a high whistle", "a low hum"]),
            item("p2", "auditorybench-pitch", [c2, c3], spans=["a bell", "a drum"]),
            item("w1", "auditorybench-pitch", [], spans=["violin", "tuba"], split="wiki"),
        ],
    )
    summary = score_task(wh, "auditorybench-pitch", scorer, "s1")
    assert (summary.items, summary.items_scored, summary.items_unscored) == (3, 2, 1)
    assert summary.clips_computed == 3 and summary.clips_decoded == 3
    assert summary.unscored_by_reason == {"item has no clip to score against": 1}
    rows = wh.rows("SELECT * FROM clap_scores WHERE item_id = 'p1' ORDER BY text_role")
    assert [r["text_role"] for r in rows] == [
        "caption1",
        "caption2",
        "span1",
        "span1_other",
        "span2",
        "span2_other",
    ]
    # Each stored score is the cosine of an independent embedding of clip and text.
    audio = scorer.embed_waveforms([load_clip_audio(clips[0], 48_000)])[0]
    text = scorer.embed_text(["a high whistle"])[0]
    span1 = next(r for r in rows if r["text_role"] == "span1")
    assert span1["clip_id"] == c1 and span1["is_primary"]
    assert span1["score"] == pytest.approx(float(audio @ text), abs=1e-5)
    assert {r["checkpoint"] for r in rows} == {"tiny-random-hf-clap"}

    # Another task on the same clips: no audio is decoded again.
    write_items(
        wh,
        "auditorybench-animal",
        [item("a1", "auditorybench-animal", [c1], spans=["woof woof"], answer="dog")],
    )
    animal = score_task(wh, "auditorybench-animal", scorer, "s2", vocabulary=lambda: VOCAB)
    assert animal.clips_decoded == 0 and animal.clips_cached == 1 and animal.items_scored == 1
    vocab_rows = wh.rows(
        "SELECT text FROM clap_scores WHERE item_id = 'a1' AND text_role LIKE 'vocab:%' ORDER BY 1"
    )
    assert [r["text"] for r in vocab_rows] == [zero_shot(a) for a in VOCAB]

    # Rescoring replaces the partition: same rows, no duplicates.
    score_task(wh, "auditorybench-pitch", scorer, "s3")
    assert (
        wh.rows("SELECT count(*) AS n FROM clap_scores WHERE task = 'auditorybench-pitch'")[0]["n"]
        == 2 * 6 + 1
    )

    # The default policy decides every current valid item; SQL shows status and reason.
    result = filter_task(wh, "auditorybench-pitch", None, "f1")
    assert result.kept + result.dropped == 2 and result.unscored == 1
    shown = wh.rows(
        "SELECT item_id, filter_status, filter_reason, filter_policy FROM items "
        "WHERE task = 'auditorybench-pitch' ORDER BY item_id"
    )
    assert all(r["filter_reason"] and r["filter_policy"] == "task-rule" for r in shown)
    assert shown[-1]["filter_status"] == "unscored"
    assert np.isfinite(
        [r["score"] for r in wh.rows("SELECT score FROM clap_scores WHERE score IS NOT NULL")]
    ).all()
