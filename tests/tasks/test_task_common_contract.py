"""The common task contract: record model vs DDL, ids, splits, dedup, validators."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.storage.schema import table
from pipeline.tasks.common import validators as v
from pipeline.tasks.common.base import item_id
from pipeline.tasks.common.dedup import mark_duplicates, normalize_text
from pipeline.tasks.common.records import ItemRecord
from pipeline.tasks.common.splits import SplitAssigner, SplitPolicy


def test_item_record_fields_match_item_records_ddl() -> None:
    assert list(ItemRecord.model_fields) == table("item_records").columns


def test_item_id_is_stable_and_depends_on_every_part() -> None:
    base = item_id("auditorybench-pitch", ["a", "b"], "v1", "k")
    assert base == item_id("auditorybench-pitch", ["a", "b"], "v1", "k")
    assert len(base) == 24
    others = {
        item_id("auditorybench-animal", ["a", "b"], "v1", "k"),
        item_id("auditorybench-pitch", ["b", "a"], "v1", "k"),
        item_id("auditorybench-pitch", ["a", "b"], "v2", "k"),
        item_id("auditorybench-pitch", ["a", "b"], "v1", "k2"),
    }
    assert base not in others and len(others) == 4


CLIPS = [
    {"clip_id": "clotho:t.wav", "source": "clotho", "split": "test"},
    {"clip_id": "clotho:d.wav", "source": "clotho", "split": "dev"},
    {"clip_id": "clotho:r.wav", "source": "clotho", "split": "train"},
    *({"clip_id": f"laion:{i}", "source": "laion630k", "split": "train"} for i in range(400)),
    {"clip_id": "laion:test", "source": "laion630k", "split": "test"},
    *({"clip_id": f"other:{i}", "source": "other", "split": None} for i in range(1000)),
]


def test_source_splits_are_followed_and_test_never_moves() -> None:
    for seed in range(5):
        assigner = SplitAssigner(CLIPS, SplitPolicy(seed=seed))
        assert assigner.clip_split("clotho:t.wav") == "test"
        assert assigner.clip_split("clotho:d.wav") == "dev"
        # clotho has its own dev split, so its train clips stay train
        assert assigner.clip_split("clotho:r.wav") == "train"
        assert assigner.clip_split("laion:test") == "test"
        laion = {assigner.clip_split(f"laion:{i}") for i in range(400)}
        assert laion == {"train", "dev"}  # dev carved from train, never test


def test_unsplit_clips_get_a_seeded_hash_split_near_the_ratios() -> None:
    assigner = SplitAssigner(CLIPS, SplitPolicy(seed=3))
    splits = [assigner.clip_split(f"other:{i}") for i in range(1000)]
    assert splits == [
        SplitAssigner(CLIPS, SplitPolicy(seed=3)).clip_split(f"other:{i}") for i in range(1000)
    ]
    assert 740 <= splits.count("train") <= 860
    assert 60 <= splits.count("dev") <= 140
    assert 60 <= splits.count("test") <= 140
    other_seed = SplitAssigner(CLIPS, SplitPolicy(seed=4))
    assert splits != [other_seed.clip_split(f"other:{i}") for i in range(1000)]


def test_pairs_across_splits_are_not_formed() -> None:
    assigner = SplitAssigner(CLIPS, SplitPolicy())
    assert assigner.pair_split("clotho:t.wav", "laion:test") == "test"
    assert assigner.pair_split("clotho:t.wav", "clotho:d.wav") is None


def _record(item: str, split: str, text: str, status: str = "valid") -> ItemRecord:
    return ItemRecord(
        item_id=item,
        task="t",
        split=split,
        input=text,
        generation_version="g",
        validation_status=status,
        run_id="r",
        created_at=datetime.now(UTC),
    )


def test_dedup_keeps_first_by_split_precedence_and_records_reasons() -> None:
    records = [
        _record("a", "train", "Woof is the sound a [MASK] makes."),
        _record("b", "test", "woof is the sound a [MASK] makes"),  # normalised copy, wins (test)
        _record("c", "train", "woof is the sound a [MASK] makes"),  # exact copy of b
        _record("d", "dev", "Meow is the sound a [MASK] makes.", status="rejected"),
        _record("e", "wiki", "Meow is the sound a [MASK] makes."),  # rejected d does not count
    ]
    counts = mark_duplicates(records, lambda r: r.input)
    status = {r.item_id: (r.validation_status, r.validation_reasons) for r in records}
    assert status["b"] == ("valid", [])
    assert status["a"] == ("rejected", [v.DUPLICATE_NORMALIZED])
    assert status["c"] == ("rejected", [v.DUPLICATE_EXACT])
    assert status["e"] == ("valid", [])
    assert counts == {v.DUPLICATE_EXACT: 1, v.DUPLICATE_NORMALIZED: 1}


def test_normalize_text_folds_case_accents_punctuation() -> None:
    assert normalize_text("  Café, au LAIT!! ") == normalize_text("cafe au lait") == "cafeaulait"


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        (v.check_mask_count("A [MASK] barks at [MASK].", 1), [v.MASK_COUNT]),
        (v.check_mask_count("A [MASK] barks.", 1), []),
        (
            v.check_spans_verbatim("Woof is the sound a [MASK] makes.", ["woof"]),
            [v.SPAN_NOT_IN_INPUT],
        ),
        (v.check_spans_verbatim("Woof is the sound a [MASK] makes.", ["Woof"]), []),
        (
            v.check_span_order("the flute is [MASK] than the tuba", ["the tuba", "the flute"]),
            [v.SPAN_ORDER],
        ),
        (v.check_span_order("the flute is [MASK] than the tuba", ["the flute", "the tuba"]), []),
        (v.check_answer_not_leaked("The dog makes a [MASK] sound.", "dog"), [v.ANSWER_LEAKED]),
        (
            v.check_answer_not_leaked("Dogs bark, a [MASK] woofs.", "dog", ["dogs"]),
            [v.ANSWER_LEAKED],
        ),
        (v.check_answer_not_leaked("The hotdog stand [MASK].", "dog"), []),
        (v.check_answer_in_options("b) rain", ["a) wind", "b) birds"]), [v.ANSWER_NOT_IN_OPTIONS]),
        (v.check_option_count(["a", "b", "c"], 4), [v.OPTION_COUNT]),
        (v.check_option_count(["a", "b", "c", "c"], 4), [v.OPTION_COUNT]),
        (v.check_length("A [MASK].", min_words=4), [v.TOO_SHORT]),
        (v.check_length("word " * 80, max_words=60), [v.TOO_LONG]),
        (v.check_language("Гав это звук, который издаёт [MASK]."), [v.NOT_ENGLISH]),
        (v.check_language("Wau ist der Laut, den ein [MASK] macht."), [v.NOT_ENGLISH]),
        (v.check_language("Woof is the sound a [MASK] makes."), []),
        (v.check_nonempty("x", " "), [v.EMPTY_FIELD]),
    ],
)
def test_each_validator_returns_its_reason(reasons: list[str], expected: list[str]) -> None:
    assert reasons == expected


def test_a_full_rerun_removes_only_its_own_stale_split_partitions(tmp_path) -> None:
    from pipeline.storage import Warehouse
    from pipeline.tasks.common.generate import ITEMS_TABLE, remove_stale_partitions

    wh = Warehouse(tmp_path / "wh")
    rows = [_record("x", "train", "A [MASK] barks.").model_dump()]
    for partition in (
        "task=t/split=train/version=v1",
        "task=t/split=dev/version=v1",
        "task=t/split=dev/version=v0",
        "task=u/split=dev/version=v1",
    ):
        wh.write_partition(ITEMS_TABLE, partition, rows)
    removed = remove_stale_partitions(wh, "t", "v1", ["task=t/split=train/version=v1"])
    assert removed == ["task=t/split=dev/version=v1"]
    assert wh.partitions(ITEMS_TABLE) == [
        "task=t/split=dev/version=v0",
        "task=t/split=train/version=v1",
        "task=u/split=dev/version=v1",
    ]
