"""Source loaders on the shipped samples and on one malformed variant per kind of bad input."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from pipeline.errors import InputFormatError
from pipeline.ingest import ingest_source
from pipeline.samples import SAMPLE_PATHS
from pipeline.sources import LOADERS, ClipRecord, Rejection
from pipeline.sources.common import UnsafeAudioPath, safe_audio_path
from pipeline.storage import Warehouse


def load_all(source: str, path: Path) -> tuple[list[ClipRecord], list[Rejection]]:
    clips: list[ClipRecord] = []
    rejects: list[Rejection] = []
    for record in LOADERS[source](path):
        (clips if isinstance(record, ClipRecord) else rejects).append(record)
    return clips, rejects


def copy_sample(source: str, tmp_path: Path) -> Path:
    target = tmp_path / source
    shutil.copytree(SAMPLE_PATHS[source], target)
    return target


def write_csv(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.write_bytes(text.encode(encoding))


# ---- the shipped samples -------------------------------------------------------------


def test_audiocaps_sample_groups_captions_per_clip() -> None:
    clips, rejects = load_all("audiocaps", SAMPLE_PATHS["audiocaps"])
    assert rejects == []
    by_split = {s: sum(c.source_split == s for c in clips) for s in ("train", "val", "test")}
    assert by_split == {"train": 13, "val": 4, "test": 4}
    bell = next(c for c in clips if c.clip_id == "audiocaps:1ZlcTANOyWE_30")
    assert bell.split == "test"
    assert len(bell.captions) == 5
    assert bell.audio_path == "test/Y1ZlcTANOyWE.wav"
    assert bell.extra["start_time"] == 30


def test_clotho_sample_decodes_latin1_and_splits_keywords() -> None:
    clips, rejects = load_all("clotho", SAMPLE_PATHS["clotho"])
    cafe = next(c for c in clips if c.clip_id == "clotho:Café ambience.wav")
    assert cafe.tags == ["café", "ambience", "people", "cups"]
    assert cafe.split == "train" and cafe.source_split == "development"
    assert cafe.audio_path == "development/Café ambience.wav"
    assert cafe.url and cafe.url.startswith("https://freesound.org/")
    # Two of the five captions of one clip are empty: recorded, clip kept with three.
    assert [(r.reason, r.action, r.field) for r in rejects] == [
        ("empty_caption", "field_dropped", "caption_2"),
        ("empty_caption", "field_dropped", "caption_3"),
    ]
    fan = next(c for c in clips if c.clip_id == "clotho:Empty caption clip.wav")
    assert len(fan.captions) == 3


def test_clotho_aqa_sample_keeps_every_answer_as_qa() -> None:
    clips, rejects = load_all("clotho-aqa", SAMPLE_PATHS["clotho-aqa"])
    assert rejects == []
    dog = next(c for c in clips if c.clip_id == "clotho-aqa:dog_backyard.wav")
    assert len(dog.qa) == 12
    assert [q.answer for q in dog.qa if q.question == "How many times does the dog bark?"] == [
        "three",
        "three",
        "four",
    ]
    assert {c.split for c in clips} == {"train", "dev", "test"}


def test_laion_sample_from_json_folder() -> None:
    clips, rejects = load_all("laion630k", SAMPLE_PATHS["laion630k"])
    assert rejects == [] and len(clips) == 43
    cat = next(c for c in clips if c.clip_id == "laion630k:100103")
    assert cat.split == "train"
    assert cat.audio_path == "train/100103.flac"
    assert cat.title == "Cat meow" and "meow" in cat.tags
    assert cat.extra["freesound_id"] == "400103"


def make_shards(src: Path, out: Path, audio_dir: Path | None, per_shard: int = 16) -> list[Path]:
    """Pack the sample JSON (and audio when given) into webdataset-style tar shards."""
    out.mkdir(parents=True)
    stems = sorted(p for p in src.rglob("*.json"))
    shards = []
    for index in range(0, len(stems), per_shard):
        shard = out / "train" / f"{index // per_shard:06d}.tar"
        shard.parent.mkdir(exist_ok=True)
        with tarfile.open(shard, "w") as tar:
            for json_path in stems[index : index + per_shard]:
                if audio_dir is not None:
                    audio = audio_dir / json_path.relative_to(src).with_suffix(".flac")
                    tar.add(audio, arcname=f"{json_path.stem}.flac")
                tar.add(json_path, arcname=f"{json_path.stem}.json")
        shards.append(shard)
    return shards


def test_laion_tar_shards_are_streamed_not_extracted(
    tmp_path: Path, sample_audio_dir: Path
) -> None:
    shards_dir = tmp_path / "shards"
    make_shards(SAMPLE_PATHS["laion630k"], shards_dir, sample_audio_dir / "laion630k")
    before = sorted(p for p in tmp_path.rglob("*"))
    clips, rejects = load_all("laion630k", shards_dir)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing extracted
    assert rejects == [] and len(clips) == 43
    dog = next(c for c in clips if c.clip_id == "laion630k:100101")
    assert dog.audio_path == "train/000000.tar#100101.flac"
    assert dog.split == "train"
    assert dog.duration_s == pytest.approx(4.0, abs=0.01)  # read from the FLAC header


# ---- whole-file errors name the file and the missing column --------------------------


@pytest.mark.parametrize(
    ("source", "file_name", "header", "missing"),
    [
        ("audiocaps", "train.csv", "audiocap_id,youtube_id,caption\n", "start_time"),
        (
            "clotho",
            "clotho_captions_development.csv",
            "file_name,caption_1,caption_2\n",
            "caption_3",
        ),
        ("clotho-aqa", "clotho_aqa_train.csv", "file_name,question,answer\n", "QuestionText"),
        ("laion630k", "freesound_meta.csv", "filename,freesound_id\n", "audio_filename"),
    ],
)
def test_wrong_columns_name_file_and_column(
    tmp_path: Path, source: str, file_name: str, header: str, missing: str
) -> None:
    folder = copy_sample(source, tmp_path)
    write_csv(folder / file_name, header + ",".join("x" * header.count(",")) + ",x\n")
    with pytest.raises(InputFormatError) as excinfo:
        load_all(source, folder)
    message = str(excinfo.value)
    assert str(folder / file_name) in message
    assert missing in message


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no AudioCaps CSV found"):
        load_all("audiocaps", tmp_path)


# ---- row-level problems become counted rejections ------------------------------------


def test_undecodable_bytes_are_rejected_with_field(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_bytes(
        b"audiocap_id,youtube_id,start_time,caption\n"
        b"1,abcdefghijk,0,A dog barks\n"
        b"2,bcdefghijkl,10,A caf\xe9 with \xff noise\n"
    )
    clips, rejects = load_all("audiocaps", path)
    assert [c.clip_id for c in clips] == ["audiocaps:abcdefghijk_0"]
    (bad,) = rejects
    assert (bad.reason, bad.field, bad.source_row) == ("undecodable_bytes", "caption", 2)
    assert bad.source_file == str(path)


def test_laion_json_undecodable_and_invalid_are_rejected(tmp_path: Path) -> None:
    folder = copy_sample("laion630k", tmp_path)
    (folder / "train" / "100101.json").write_bytes(b'{"text": ["caf\xe9"]}')
    (folder / "train" / "100102.json").write_text('{"text": ["unterminated"')
    clips, rejects = load_all("laion630k", folder)
    assert len(clips) == 41
    assert sorted((r.record_id, r.reason) for r in rejects) == [
        ("laion630k:100101", "undecodable_bytes"),
        ("laion630k:100102", "invalid_json"),
    ]


def test_empty_captions_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    write_csv(
        path, "audiocap_id,youtube_id,start_time,caption\n1,abcdefghijk,0,   \n2,bcdefghijkl,0,ok\n"
    )
    clips, rejects = load_all("audiocaps", path)
    assert len(clips) == 1
    assert [(r.reason, r.field, r.source_row) for r in rejects] == [("empty_caption", "caption", 1)]

    folder = copy_sample("laion630k", tmp_path)
    (folder / "train" / "100101.json").write_text(json.dumps({"text": ["", "  "], "tag": []}))
    _, laion_rejects = load_all("laion630k", folder)
    assert [(r.reason, r.field) for r in laion_rejects] == [("empty_caption", "text")]


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    write_csv(
        path,
        "audiocap_id,youtube_id,start_time,caption\n"
        "1,abcdefghijk,0,A dog barks\n"
        "1,bcdefghijkl,0,A cat meows\n",
    )
    clips, rejects = load_all("audiocaps", path)
    assert len(clips) == 1 and rejects[0].reason == "duplicate_id" and rejects[0].source_row == 2

    folder = copy_sample("clotho", tmp_path)
    captions = folder / "clotho_captions_evaluation.csv"
    lines = captions.read_bytes().splitlines(keepends=True)
    captions.write_bytes(b"".join([*lines, lines[1]]))
    _, clotho_rejects = load_all("clotho", folder)
    dup = [r for r in clotho_rejects if r.reason == "duplicate_id"]
    assert len(dup) == 1 and dup[0].record_id == "clotho:Seagulls at harbour.wav"


def test_audiocaps_clip_in_two_splits_is_rejected_not_leaked(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "train.csv", "audiocap_id,youtube_id,start_time,caption\n1,abcdefghijk,0,a dog\n"
    )
    write_csv(
        tmp_path / "test.csv", "audiocap_id,youtube_id,start_time,caption\n2,abcdefghijk,0,a dog\n"
    )
    clips, rejects = load_all("audiocaps", tmp_path)
    assert [c.split for c in clips] == ["train"]
    assert rejects[0].reason == "duplicate_id" and "already in split 'train'" in (
        rejects[0].detail or ""
    )


@pytest.mark.parametrize("bad_name", ["../../etc/passwd", "/etc/passwd"])
def test_paths_escaping_the_audio_root_are_rejected(tmp_path: Path, bad_name: str) -> None:
    folder = copy_sample("clotho-aqa", tmp_path)
    with open(folder / "clotho_aqa_val.csv", "a", encoding="latin-1") as handle:
        handle.write(f"{bad_name},Is it loud?,yes,yes\n")
    clips, rejects = load_all("clotho-aqa", folder)
    assert len(clips) == 13
    assert [(r.reason, r.field) for r in rejects] == [("unsafe_audio_path", "file_name")]

    laion = copy_sample("laion630k", tmp_path / "laion")
    payload = json.loads((laion / "train" / "100101.json").read_text())
    payload["audio_path"] = bad_name
    (laion / "train" / "100101.json").write_text(json.dumps(payload))
    _, laion_rejects = load_all("laion630k", laion)
    assert [(r.reason, r.record_id) for r in laion_rejects] == [
        ("unsafe_audio_path", "laion630k:100101")
    ]


@pytest.mark.parametrize(
    "raw", ["../x.wav", "a/../../x.wav", "/abs.wav", "C:\\x.wav", "a\\b.wav", ""]
)
def test_safe_audio_path_refuses_escapes(raw: str) -> None:
    with pytest.raises(UnsafeAudioPath):
        safe_audio_path(raw)


def test_corrupt_tar_shard_is_recorded_and_the_rest_ingested(
    tmp_path: Path, sample_audio_dir: Path, warehouse: Warehouse
) -> None:
    shards = make_shards(SAMPLE_PATHS["laion630k"], tmp_path / "shards", None)
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 2] + b"\x00garbage" * 64)
    summary = ingest_source(warehouse, "laion630k", tmp_path / "shards", "run-1")
    assert summary.rejects_by_reason.get("unreadable_shard") == 1
    assert summary.clips >= 32  # the two intact shards, plus what preceded the damage
    rows = warehouse.rows(
        "SELECT reason, source_file FROM rejects WHERE reason = 'unreadable_shard'"
    )
    assert rows == [{"reason": "unreadable_shard", "source_file": str(shards[1])}]
