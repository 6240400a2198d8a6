"""AuditoryBench end to end on the sample corpora with the offline backend.

One module-scoped warehouse: ingest the samples, generate both tasks once, then check
labels against the known synthetic tones, splits, dedup, balance, reruns and exports.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.samples.audio import read_specs
from pipeline.storage import Warehouse
from pipeline.tasks import TASKS as REGISTRY
from pipeline.tasks import GenerateSummary, export_task, generate_task, report_task
from pipeline.tasks.auditorybench.knowledge import animal_vocabulary
from pipeline.tasks.auditorybench.pitch_comparison import PitchTask

TASKS = ("auditorybench-animal", "auditorybench-pitch")
# The first rows of the published dev files, copied verbatim (source: tests/training/data/README.md)
PUBLISHED = Path(__file__).resolve().parents[1] / "training" / "data"
CHIRP_MEDIAN_FACTOR = 1 + 0.5 * math.sin(math.pi / 4)


def true_pitch() -> dict[str, float]:
    """Known median f0 of every pitched LAION sample clip, from audio_specs.csv."""
    pitches = {}
    for spec in read_specs():
        if spec.source != "laion630k" or spec.kind in ("noise", "silence"):
            continue
        clip_id = "laion630k:" + Path(spec.audio_path).stem
        pitches[clip_id] = spec.f0_hz * (CHIRP_MEDIAN_FACTOR if spec.kind == "chirp" else 1.0)
    return pitches


@pytest.fixture(scope="module")
def generated(
    tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path
) -> Iterator[tuple[Warehouse, dict[str, GenerateSummary]]]:
    # The ring pairing (each clip in up to 8 pairs) gives the label checks enough pairs
    # from the sample clips; the published one-use pairing has its own test.
    patch = pytest.MonkeyPatch()
    patch.setitem(REGISTRY, "auditorybench-pitch", PitchTask(pairing="ring"))
    wh = Warehouse(tmp_path_factory.mktemp("abench") / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "ingest", sample_audio_root(sample_audio_dir, source))
    config = LLMConfig.from_env()
    assert config.backend == "offline"
    summaries = {task: generate_task(wh, task, config, "run-1") for task in TASKS}
    yield wh, summaries
    patch.undo()


def test_every_pitch_label_matches_the_known_tone_frequencies(generated) -> None:
    wh, _ = generated
    truth = true_pitch()
    rows = wh.rows(
        "SELECT clip_ids, answer, facts FROM items_current WHERE task = 'auditorybench-pitch' "
        "AND subtask = 'clip' AND validation_status = 'valid'"
    )
    assert len(rows) >= 20
    for row in rows:
        first, second = row["clip_ids"]
        expected = "higher" if truth[first] > truth[second] else "lower"
        assert row["answer"] == expected, row
        facts = json.loads(row["facts"])
        assert facts["avg_pitch_1"] == pytest.approx(truth[first], rel=0.03)
        assert facts["avg_pitch_2"] == pytest.approx(truth[second], rel=0.03)
        assert facts["difference_percentage"] >= 0.10
        assert facts["difference_percentage"] == pytest.approx(
            abs(facts["avg_pitch_2"] - facts["avg_pitch_1"]) / facts["avg_pitch_1"]
        )


def test_noise_clips_never_reach_a_pitch_item(generated) -> None:
    wh, _ = generated
    used = wh.rows(
        "SELECT DISTINCT unnest(clip_ids) AS clip_id FROM items_current "
        "WHERE task = 'auditorybench-pitch'"
    )
    noise = {
        "laion630k:" + Path(s.audio_path).stem
        for s in read_specs()
        if s.source == "laion630k" and s.kind == "noise"
    }
    assert noise.isdisjoint({r["clip_id"] for r in used})
    statuses = wh.rows(
        "SELECT status, count(*) AS n FROM clip_pitch WHERE list_contains(?, clip_id) GROUP BY 1",
        [sorted(noise)],
    )
    assert {r["status"] for r in statuses} == {"too_little_voiced"}


def test_no_clip_and_no_text_leaks_across_splits(generated) -> None:
    wh, _ = generated
    for task in TASKS:
        leaked = wh.rows(
            "SELECT clip_id FROM (SELECT unnest(clip_ids) AS clip_id, split FROM items_current "
            "WHERE task = ?) GROUP BY clip_id HAVING count(DISTINCT split) > 1",
            [task],
        )
        assert leaked == []
        report = report_task(wh, task)
        assert report.cross_split_duplicates == 0
        assert all(s.unlabeled_valid == 0 for s in report.splits)
    # LAION test clips only ever go to test
    test_clips = {r["clip_id"] for r in wh.rows("SELECT clip_id FROM clips WHERE split = 'test'")}
    rows = wh.rows(
        "SELECT split, clip_ids FROM items_current WHERE task LIKE 'auditorybench-%' "
        "AND len(clip_ids) > 0"
    )
    for row in rows:
        if test_clips & set(row["clip_ids"]):
            assert row["split"] == "test"


def test_pitch_labels_are_balanced_within_two_percent_per_split(generated) -> None:
    wh, _ = generated
    for split in report_task(wh, "auditorybench-pitch").splits:
        higher, lower = split.labels.get("higher", 0), split.labels.get("lower", 0)
        assert higher + lower > 0
        assert abs(higher / (higher + lower) - 0.5) <= 0.02, split


def test_animal_answers_are_broad_vocabulary_names(generated) -> None:
    wh, _ = generated
    rows = wh.rows(
        "SELECT clip_ids, answer, facts, model FROM items_current "
        "WHERE task = 'auditorybench-animal' AND validation_status = 'valid'"
    )
    assert {r["answer"] for r in rows} <= set(animal_vocabulary().animals)
    pomeranian = next(r for r in rows if r["clip_ids"] == ["laion630k:100116"])
    assert pomeranian["answer"] == "dog"
    assert json.loads(pomeranian["facts"])["answer_raw"] == "Pomeranian"
    assert {r["model"] for r in rows if r["clip_ids"]} == {"offline-rules"}
    assert {r["model"] for r in rows if not r["clip_ids"]} == {"template"}


def test_wiki_duplicates_and_ambiguous_sounds_are_rejected_rows(generated) -> None:
    wh, summaries = generated
    counts = {
        r["reason"]: r["n"]
        for r in wh.rows(
            "SELECT unnest(validation_reasons) AS reason, count(*) AS n FROM items_current "
            "WHERE task = 'auditorybench-animal' GROUP BY 1"
        )
    }
    assert counts["ambiguous_sound"] > 50
    assert summaries["auditorybench-animal"].rejected_by_reason == counts


def test_categories_are_stored_per_clip_with_their_llm_call(generated) -> None:
    wh, _ = generated
    rows = wh.rows("SELECT * FROM clip_categories")
    laion = wh.rows("SELECT count(*) AS n FROM clips WHERE source = 'laion630k'")[0]["n"]
    assert len({r["clip_id"] for r in rows}) == laion
    by_clip = {r["clip_id"]: r for r in rows}
    assert by_clip["laion630k:100101"]["category"] == "animal/dog/bark"
    assert by_clip["laion630k:100501"]["status"] == "declined"
    assert all(r["llm_call_key"] for r in rows)
    calls = wh.rows(
        "SELECT count(*) AS n FROM llm_calls WHERE list_contains(?, call_key)",
        [[r["llm_call_key"] for r in rows]],
    )
    assert calls[0]["n"] == len(rows)


def test_rerun_is_idempotent_and_served_from_the_cache(generated) -> None:
    wh, summaries = generated
    calls_before = wh.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"]
    ids_before = wh.rows("SELECT item_id FROM item_records ORDER BY 1")
    again = generate_task(wh, "auditorybench-pitch", LLMConfig.from_env(), "run-2")
    assert again.generation_version == summaries["auditorybench-pitch"].generation_version
    assert wh.rows("SELECT item_id FROM item_records ORDER BY 1") == ids_before
    assert wh.rows("SELECT count(*) AS n FROM llm_calls")[0]["n"] == calls_before


def test_auditorybench_csv_parses_like_the_published_files(generated, tmp_path: Path) -> None:
    wh, _ = generated
    pairs = {
        "auditorybench-animal": (
            "animal_sound_recognition_{}.csv",
            "animal_sound_recognition_dev.csv",
        ),
        "auditorybench-pitch": ("sound_pitch_comparsion_{}.csv", "sound_pitch_comparsion_dev.csv"),
    }
    for task, (pattern, published_name) in pairs.items():
        published = PUBLISHED / published_name
        written = export_task(wh, task, "auditorybench-csv", tmp_path / task)
        assert {p.name for p in written} == {
            pattern.format(s) for s in ("train", "dev", "test", "wiki")
        }
        ours = tmp_path / task / pattern.format("train")
        with (
            open(published, newline="", encoding="utf-8") as a,
            open(ours, newline="", encoding="utf-8") as b,
        ):
            assert next(csv.reader(b)) == next(csv.reader(a))
        theirs_df, ours_df = pd.read_csv(published), pd.read_csv(ours)
        assert list(ours_df.columns) == list(theirs_df.columns)
        assert dict(ours_df.dtypes) == dict(theirs_df.dtypes)
        valid = wh.rows(
            "SELECT count(*) AS n FROM items_current WHERE task = ? AND split = 'train' "
            "AND validation_status = 'valid'",
            [task],
        )[0]["n"]
        assert len(ours_df) == valid
        assert ours_df["sentence"].str.count(r"\[MASK\]").eq(1).all()
    pitch = pd.read_csv(tmp_path / "auditorybench-pitch" / "sound_pitch_comparsion_train.csv")
    assert set(pitch["answer"]) == {"higher", "lower"}
    assert all(
        s1 in s and s2 in s
        for s, s1, s2 in zip(pitch.sentence, pitch.span1, pitch.span2, strict=True)
    )


def test_extra_columns_follow_the_published_ones(generated, tmp_path: Path) -> None:
    wh, _ = generated
    export_task(wh, "auditorybench-pitch", "auditorybench-csv", tmp_path, extra_columns=True)
    text = (tmp_path / "sound_pitch_comparsion_test.csv").read_text(encoding="utf-8")
    frame = pd.read_csv(tmp_path / "sound_pitch_comparsion_test.csv")
    # The first published version's header (sound_pitch_comparsion_dev_with_pitch.csv).
    assert list(frame.columns[:12]) == [
        "id_1", "id_2", "audio_filename_1", "audio_filename_2", "sentence", "answer",
        "span1", "span2", "avg_pitch_1", "avg_pitch_2", "difference_percentage", "answer_pitch",
    ]  # fmt: skip
    assert "item_id" in frame.columns
    assert frame["id_1"].dtype == frame["id_2"].dtype == "int64"
    assert frame["audio_filename_1"].str.fullmatch(r"(train|valid|test)/\w+\.flac").all()
    assert ",/" not in text and str(tmp_path) not in text  # no absolute local path
    by_freesound_id = {
        int(json.loads(c["extra"])["freesound_id"]): c["clip_id"]
        for c in wh.rows("SELECT clip_id, extra FROM clips WHERE source = 'laion630k'")
    }
    truth = true_pitch()
    for row in frame.itertuples():
        first, second = by_freesound_id[row.id_1], by_freesound_id[row.id_2]
        assert row.answer == ("higher" if truth[first] > truth[second] else "lower")
        assert row.answer_pitch == row.answer
        assert row.audio_filename_1.endswith(first.split(":", 1)[1] + ".flac")


def test_hf_export_round_trips(generated, tmp_path: Path) -> None:
    import datasets

    wh, _ = generated
    export_task(wh, "auditorybench-animal", "hf", tmp_path / "hf")
    loaded = datasets.load_from_disk(str(tmp_path / "hf"))
    expected = {
        r["split"]: r["n"]
        for r in wh.rows(
            "SELECT split, count(*) AS n FROM items_current WHERE task = 'auditorybench-animal' "
            "AND validation_status = 'valid' GROUP BY 1"
        )
    }
    assert {name: len(ds) for name, ds in loaded.items()} == expected
    row = next(r for r in loaded["test"] if r["clip_ids"] == ["laion630k:100116"])
    assert row["answer"] == "dog" and row["input"].count("[MASK]") == 1
    assert row["audio_paths"][0].endswith("test/100116.flac")


def test_jsonl_export_round_trips(generated, tmp_path: Path) -> None:
    wh, _ = generated
    paths = export_task(wh, "auditorybench-pitch", "jsonl", tmp_path)
    records = [json.loads(line) for p in paths for line in p.read_text().splitlines()]
    ids = {
        r["item_id"]
        for r in wh.rows(
            "SELECT item_id FROM items_current WHERE task = 'auditorybench-pitch' AND validation_status = 'valid'"
        )
    }
    assert {r["key"] for r in records} == ids
    clip_record = next(r for r in records if isinstance(r["source"], list))
    assert len(clip_record["source"]) == 2 and all(Path(p).is_file() for p in clip_record["source"])
    assert all(set(r) == {"key", "source", "prompt", "target"} for r in records)


def test_export_excludes_clap_dropped_items_unless_asked(generated, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    wh, _ = generated
    items = wh.rows(
        "SELECT item_id FROM items_current WHERE task = 'auditorybench-animal' "
        "AND split = 'train' AND validation_status = 'valid' ORDER BY item_id"
    )
    decisions = [
        {
            "item_id": r["item_id"],
            "task": "auditorybench-animal",
            "policy": "test",
            "filter_status": "dropped" if i == 0 else "kept",
            "run_id": "f",
            "decided_at": datetime.now(UTC),
        }
        for i, r in enumerate(items)
    ]
    wh.write_partition("item_filters", "task=auditorybench-animal/policy=test", decisions)
    try:
        export_task(wh, "auditorybench-animal", "auditorybench-csv", tmp_path / "kept")
        export_task(
            wh, "auditorybench-animal", "auditorybench-csv", tmp_path / "all", include_dropped=True
        )
        kept = pd.read_csv(tmp_path / "kept" / "animal_sound_recognition_train.csv")
        everything = pd.read_csv(tmp_path / "all" / "animal_sound_recognition_train.csv")
        assert len(kept) == len(items) - 1 and len(everything) == len(items)
        # other splits have no decision yet: unscored items are exported, only dropped ones not
        unscored_test = pd.read_csv(tmp_path / "kept" / "animal_sound_recognition_test.csv")
        assert (
            len(unscored_test)
            == wh.rows(
                "SELECT count(*) AS n FROM items_current WHERE task = 'auditorybench-animal' "
                "AND split = 'test' AND validation_status = 'valid'"
            )[0]["n"]
        )
    finally:
        wh.delete_partition("item_filters", "task=auditorybench-animal/policy=test")


def test_report_markdown_shows_the_quality_numbers(generated) -> None:
    wh, _ = generated
    text = report_task(wh, "auditorybench-pitch").markdown()
    assert "Cross-split duplicates among valid items: **0**" in text
    assert "| test |" in text and "higher" in text and "Label gap histogram" in text


def test_pairs_below_the_minimum_gap_are_rejected_rows_without_llm_calls(generated) -> None:
    wh, _ = generated
    rows = wh.rows(
        "SELECT * FROM items_current WHERE task = 'auditorybench-pitch' "
        "AND list_contains(validation_reasons, 'pitch_gap_too_small')"
    )
    assert rows, "the samples hold at least one pair closer than 10 %"
    for row in rows:
        facts = json.loads(row["facts"])
        high = max(facts["avg_pitch_1"], facts["avg_pitch_2"])
        low = min(facts["avg_pitch_1"], facts["avg_pitch_2"])
        assert (high - low) / high < 0.10
        assert row["input"] is None and row["llm_call_key"] is None


def test_sound_lookup_finds_the_same_sound_as_a_walk_over_the_lexicon() -> None:
    """The offline rules look sound words up in a table of spellings; it must return what a
    walk over words x lexicon (first matching word, then lexicon order) returns."""
    import random

    from pipeline.tasks.auditorybench.offline import _animal_sound, _words

    vocabulary = animal_vocabulary()
    every_sound = tuple(sorted(vocabulary.sound_words))
    suffixes = ("", "s", "es", "ing", "ed", "x")

    def walk(animal: str, words: list[str]) -> str | None:
        own = vocabulary.get(animal).sounds
        for lexicon in (own, every_sound):
            for word in words:
                for sound in lexicon:
                    if word in (sound, sound + "s", sound + "es", sound + "ing"):
                        return sound
        return None

    rng = random.Random(7)
    animals = sorted(a for a in vocabulary.animals if vocabulary.get(a).sounds)
    found = 0
    for _ in range(400):
        animal = rng.choice(animals)
        pool = every_sound + vocabulary.get(animal).sounds * 20  # its own sounds often
        words = [rng.choice(pool) + rng.choice(suffixes) for _ in range(rng.randint(0, 4))]
        words += rng.sample(["forest", "night", "recording", "loud"], 2)
        rng.shuffle(words)
        variables = {"tags": words, "title": "", "description": "", "captions": []}
        lowered = [w for tag in words for w in [tag, *_words(tag)]]  # each tag, then its tokens
        expected = walk(animal, lowered)
        assert _animal_sound(animal, variables) == expected, (animal, words)
        found += expected is not None
    assert found > 100, found  # the comparison covered many matches, not only misses
