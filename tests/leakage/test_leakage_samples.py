"""On the sample corpora: every planted overlap is found, resolved, and no export leaks.

Planted in pipeline/samples/data: LAION train clip 100601 has Clotho evaluation's Freesound
id 4012; AudioCaps train clip rEnc0dEd406 is LAION test clip 100406 re-encoded (16 kHz,
Ogg Vorbis round trip, gain 0.5; audio_copies.csv); Clotho-AQA train uses Clotho
evaluation's file 'Typing office.wav'.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.audio.fingerprint import fingerprint_clips
from pipeline.ingest import ingest_source
from pipeline.llm import LLMConfig
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.storage import Warehouse
from pipeline.tasks import TASKS
from pipeline.tasks.common.generate import generate_task
from pipeline.tasks.common.report import report_task
from pipeline.tasks.common.sound_groups import compute_sound_groups, write_sound_groups
from pipeline.tasks.common.splits import SplitAssigner, SplitPolicy

PLANTED = {
    "freesound_id": ("clotho:Seagulls at harbour.wav", "laion630k:100601"),
    "fingerprint": ("audiocaps:rEnc0dEd406_0", "laion630k:100406"),
    "clotho_file": ("clotho-aqa:Typing office.wav", "clotho:Typing office.wav"),
}

EXPORTED_GROUP_SPLITS_SQL = """
SELECT coalesce(g.sound_group, e.clip_id) AS sound_group, count(DISTINCT e.split) AS splits
FROM (SELECT task, split, unnest(clip_ids) AS clip_id FROM items_current
      WHERE validation_status = 'valid' AND filter_status <> 'dropped') e
LEFT JOIN sound_groups g USING (clip_id)
GROUP BY 1 HAVING count(DISTINCT e.split) > 1
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, sample_audio_dir: Path) -> Iterator[Warehouse]:
    wh = Warehouse(tmp_path_factory.mktemp("leakage") / "warehouse")
    for source, path in SAMPLE_PATHS.items():
        ingest_source(wh, source, path, "ingest", sample_audio_root(sample_audio_dir, source))
    clip_ids = [r["clip_id"] for r in wh.rows("SELECT clip_id FROM clips")]
    fingerprint_clips(wh, clip_ids, "group")
    _, groups = compute_sound_groups(wh)
    write_sound_groups(wh, groups, "group")
    config = LLMConfig.from_env(backend="offline")
    for task in TASKS:
        generate_task(wh, task, config, "run-1")
    yield wh


def test_every_planted_overlap_is_found_with_its_link_kind(built: Warehouse) -> None:
    rows = {r["clip_id"]: r for r in built.rows("SELECT * FROM sound_groups")}
    assert len(rows) == built.rows("SELECT count(*) AS n FROM clips")[0]["n"]
    for kind, (first, second) in PLANTED.items():
        assert rows[first]["sound_group"] == rows[second]["sound_group"]
        assert kind in rows[first]["linked_by"].split(",")
        assert kind in rows[second]["linked_by"].split(",")
    linked = {c for c, r in rows.items() if r["linked_by"] != "self"}
    assert linked == {c for pair in PLANTED.values() for c in pair}


def test_every_planted_overlap_is_resolved_into_test(built: Warehouse) -> None:
    assigner = SplitAssigner.from_warehouse(built, SplitPolicy())
    per_clip = SplitAssigner(built.rows("SELECT clip_id, source, split FROM clips"), SplitPolicy())
    for first, second in PLANTED.values():
        assert assigner.clip_split(first) == assigner.clip_split(second) == "test"
    # per clip (the old rule) the copies sat in different splits: the overlaps were real
    assert per_clip.clip_split("laion630k:100601") != per_clip.clip_split(
        "clotho:Seagulls at harbour.wav"
    )
    assert per_clip.clip_split("audiocaps:rEnc0dEd406_0") == "train"
    planted = sorted({c for pair in PLANTED.values() for c in pair})
    item_splits = built.rows(
        "SELECT DISTINCT split FROM (SELECT split, unnest(clip_ids) AS clip_id "
        "FROM items_current) WHERE list_contains(?, clip_id)",
        [planted],
    )
    assert item_splits and {r["split"] for r in item_splits} == {"test"}


def test_no_sound_group_of_any_export_sits_in_two_splits(built: Warehouse) -> None:
    tasks = {r["task"] for r in built.rows("SELECT DISTINCT task FROM items_current")}
    assert tasks == set(TASKS)
    assert built.rows(EXPORTED_GROUP_SPLITS_SQL) == []
    assert built.rows("SELECT * FROM leakage") == []
    report = report_task(built, "reasonaqa")
    assert report.leakage.groups_crossing_splits == 0
    assert report.leakage.linked_clips_by_kind == {
        "clotho_file": 2,
        "fingerprint": 2,
        "freesound_id": 2,
    }
    assert "Sound groups in more than one split" in report.markdown()


def test_the_leakage_view_finds_a_group_put_in_two_splits(built: Warehouse) -> None:
    from pipeline.storage.warehouse import utc_now
    from pipeline.tasks.common.records import ItemRecord

    def forged(split: str, clip_id: str) -> dict:
        return ItemRecord(
            item_id=f"forged-{split}",
            task="forged",
            split=split,
            clip_ids=[clip_id],
            generation_version="v1",
            validation_status="valid",
            validation_reasons=[],
            run_id="forged",
            created_at=utc_now(),
        ).model_dump()

    first, second = PLANTED["freesound_id"]
    partition = "task=forged/split=all/version=v1"
    built.write_partition(
        "item_records", partition, [forged("train", first), forged("test", second)]
    )
    try:
        rows = built.rows("SELECT * FROM leakage")
        forged_rows = [r for r in rows if r["task"] == "forged"]
        assert [(r["sound_group"], r["splits"], r["linked_by"]) for r in forged_rows] == [
            ("clotho:Seagulls at harbour.wav", ["test", "train"], "freesound_id")
        ]
        # every other task holding that sound is listed too: the sound crosses splits
        # across tasks, though each of those tasks alone keeps it in test
        others = [r for r in rows if r["task"] != "forged"]
        assert others and all(r["splits"] == ["test"] for r in others)
        assert {r["sound_group"] for r in rows} == {"clotho:Seagulls at harbour.wav"}
        assert all(r["all_splits"] == ["test", "train"] for r in rows)
        assert len(built.rows(EXPORTED_GROUP_SPLITS_SQL)) == 1
        assert report_task(built, "reasonaqa").leakage.groups_crossing_splits == 1
    finally:
        built.delete_partition("item_records", partition)


def test_regrouping_unchanged_clips_rewrites_nothing(built: Warehouse) -> None:
    _, groups = compute_sound_groups(built)
    assert write_sound_groups(built, groups, "again") == 0
    groups.group_of["laion630k:100601"] = "laion630k:100601"
    assert write_sound_groups(built, groups, "changed") == len(groups.group_of)
    _, restored = compute_sound_groups(built)
    assert write_sound_groups(built, restored, "restored") == len(restored.group_of)
