"""Pitch task rules without audio: pairing, the minimum gap, order balancing, label_balance."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.tasks.auditorybench.pitch_comparison import (
    LABEL_BALANCE,
    PitchTask,
    difference_percentage,
    label,
    order_independent_gap,
    seeded_pairs,
)
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.common.staging import finalize_records


def test_difference_percentage_is_the_published_definition() -> None:
    # published dev row: avg_pitch_1 1029.5283, avg_pitch_2 2037.5833 → 0.9791425840358152
    assert difference_percentage(1029.5283, 2037.5833) == pytest.approx(0.9791425840358152)
    assert label(1029.5283, 2037.5833) == "lower"
    assert label(2037.5833, 1029.5283) == "higher"


def test_min_gap_holds_in_either_order() -> None:
    assert order_independent_gap(100.0, 111.0) == pytest.approx(11 / 111)  # < 0.10: skipped
    assert order_independent_gap(100.0, 112.0) == pytest.approx(12 / 112)  # ≥ 0.10: used
    for a, b in ((100.0, 112.0), (112.0, 100.0)):
        assert difference_percentage(a, b) >= order_independent_gap(a, b)


def test_seeded_pairs_are_unique_deterministic_and_bounded() -> None:
    clips = [f"c{i:02d}" for i in range(30)]
    pairs = seeded_pairs(clips, 4, seed=1)
    assert pairs == seeded_pairs(list(reversed(clips)), 4, seed=1)
    assert pairs != seeded_pairs(clips, 4, seed=2)
    assert len(pairs) == len(set(pairs)) == 30 * 4
    assert all(a < b for a, b in pairs)
    small = [f"c{i}" for i in range(5)]
    assert len(seeded_pairs(small, 8, seed=0)) == 10  # every pair when the pool is small


def test_order_pairs_alternates_labels_and_puts_small_gaps_last() -> None:
    pitches = {f"c{i}": {"median_f0_hz": 100.0 * 1.5**i} for i in range(6)}
    pitches["near"] = {"median_f0_hz": 101.0}
    pairs = [*seeded_pairs(list(pitches), 8, seed=0)]
    ordered = PitchTask().order_pairs(pairs, pitches, seed=0)
    usable = [
        (a, b)
        for a, b in ordered
        if order_independent_gap(pitches[a]["median_f0_hz"], pitches[b]["median_f0_hz"]) >= 0.1
    ]
    labels = [label(pitches[a]["median_f0_hz"], pitches[b]["median_f0_hz"]) for a, b in usable]
    assert labels == ["higher", "lower"] * (len(labels) // 2) + ["higher"] * (len(labels) % 2)
    assert ("c0", "near") in ordered[len(usable) :]  # the 1 % gap pair is kept, for the record


def _record(item_id: str, answer: str) -> ItemRecord:
    return ItemRecord(
        item_id=item_id,
        task="auditorybench-pitch",
        split="train",
        answer=answer,
        generation_version="g",
        validation_status="valid",
        run_id="r",
        created_at=datetime.now(UTC),
    )


def test_finalize_rejects_the_majority_surplus_down_to_two_percent() -> None:
    records = [_record(f"h{i:02d}", "higher") for i in range(60)]
    records += [_record(f"l{i:02d}", "lower") for i in range(40)]
    counts = finalize_records(PitchTask(), records)
    valid = [r for r in records if r.validation_status == "valid"]
    higher = sum(r.answer == "higher" for r in valid)
    assert abs(higher / len(valid) - 0.5) <= 0.02
    assert counts == {LABEL_BALANCE: 100 - len(valid)}
    assert all(
        r.validation_reasons == [LABEL_BALANCE]
        for r in records
        if r.validation_status == "rejected"
    )
    assert all(r.answer == "higher" for r in records if r.validation_status == "rejected")
