"""One bad input row never ends an ingest: each is a counted reject whose reason, file,
row and field are visible in SQL (`rejects`), and the good rows around it are kept."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pipeline.ingest import ingest_source
from pipeline.sources.common import MAX_FIELD_CHARS, READER_FIELD_LIMIT
from pipeline.storage import Warehouse

LONG = "x" * (MAX_FIELD_CHARS + 1)
HUGE = "y" * (READER_FIELD_LIMIT + 1)  # beyond what the csv reader parses at all
CLOTHO_HEADER = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"


def ingest(tmp_path: Path, source: str, path: Path, audio_root: Path | None = None) -> Warehouse:
    wh = Warehouse(tmp_path / "wh")
    ingest_source(wh, source, path, "bad-rows", audio_root)
    return wh


def rejects(wh: Warehouse) -> list[dict[str, Any]]:
    return wh.rows(
        "SELECT reason, source_file, source_row, field, action, detail FROM rejects "
        "ORDER BY source_file, source_row"
    )


def clip_ids(wh: Warehouse) -> list[str]:
    return [r["clip_id"] for r in wh.rows("SELECT clip_id FROM clips ORDER BY clip_id")]


def audiocaps(tmp_path: Path, *rows: str) -> Path:
    folder = tmp_path / "audiocaps"
    folder.mkdir()
    body = "audiocap_id,youtube_id,start_time,caption\n" + "".join(r + "\n" for r in rows)
    (folder / "train.csv").write_text(body, encoding="utf-8")
    return folder


def clotho(tmp_path: Path, captions: bytes) -> Path:
    folder = tmp_path / "clotho"
    folder.mkdir()
    (folder / "clotho_captions_development.csv").write_bytes(captions)
    return folder


GOOD_AUDIOCAPS = "1,aaaaaaaaaaa,0,A dog barks"
LAST_AUDIOCAPS = "9,ccccccccccc,10,Rain falls on a roof"


@pytest.mark.parametrize(
    ("bad_row", "reason", "field"),
    [
        (f"2,bbbbbbbbbbb,0,{LONG}", "field_too_long", "caption"),
        ("2,bbbbbbbbbbb,inf,A cat meows", "invalid_value", "start_time"),
        ("2,bbbbbbbbbbb,nan,A cat meows", "invalid_value", "start_time"),
        ("2,bbbbbbbbbbb,-5,A cat meows", "invalid_value", "start_time"),
        ("2,bbbbbbbbbbb", "short_row", "start_time"),
        (f"2,bbbbbbbbbbb,0,{HUGE}", "csv_error", None),
    ],
    ids=["long-field", "inf", "nan", "negative", "short-row", "over-reader-limit"],
)
def test_audiocaps_bad_row_is_named(
    tmp_path: Path, bad_row: str, reason: str, field: str | None
) -> None:
    wh = ingest(tmp_path, "audiocaps", audiocaps(tmp_path, GOOD_AUDIOCAPS, bad_row, LAST_AUDIOCAPS))
    assert clip_ids(wh) == ["audiocaps:aaaaaaaaaaa_0", "audiocaps:ccccccccccc_10"]
    (rejected,) = rejects(wh)
    assert (rejected["reason"], rejected["source_row"], rejected["field"]) == (reason, 2, field)
    assert rejected["source_file"].endswith("train.csv")


def test_stray_quote_swallowing_rows_is_rejected_not_read_as_a_caption(tmp_path: Path) -> None:
    swallowed = [f"{n},id{n:09d},0,Caption number {n}" for n in range(3, 503)]
    rows = [GOOD_AUDIOCAPS, '2,bbbbbbbbbbb,0,"A cat meows', *swallowed, '503,ddddddddddd,0,end"']
    rows.append(LAST_AUDIOCAPS)
    wh = ingest(tmp_path, "audiocaps", audiocaps(tmp_path, *rows))
    assert clip_ids(wh) == ["audiocaps:aaaaaaaaaaa_0", "audiocaps:ccccccccccc_10"]
    (rejected,) = rejects(wh)
    assert (rejected["reason"], rejected["source_row"], rejected["field"]) == (
        "stray_quote",
        2,
        "caption",
    )
    assert "line 3" in rejected["detail"] and "line 504" in rejected["detail"]
    assert "501 line(s)" in rejected["detail"]


def test_caption_with_a_line_break_but_no_swallowed_rows_is_kept(tmp_path: Path) -> None:
    wh = ingest(
        tmp_path,
        "audiocaps",
        audiocaps(tmp_path, GOOD_AUDIOCAPS, '2,bbbbbbbbbbb,0,"A cat\nmeows"', LAST_AUDIOCAPS),
    )
    assert len(clip_ids(wh)) == 3 and rejects(wh) == []


@pytest.mark.parametrize("source", ["clotho", "clotho-aqa"])
def test_long_field_in_every_csv_loader(tmp_path: Path, source: str) -> None:
    if source == "clotho":
        body = CLOTHO_HEADER + "a.wav,one,two,three,four,five\n" + f"b.wav,{LONG},2,3,4,5\n"
        path = clotho(tmp_path, body.encode())
    else:
        path = tmp_path / "aqa"
        path.mkdir()
        (path / "clotho_aqa_train.csv").write_text(
            "file_name,QuestionText,answer\na.wav,Is it loud?,yes\n" + f"b.wav,{LONG},no\n"
        )
    wh = ingest(tmp_path, source, path)
    assert len(clip_ids(wh)) == 1
    (rejected,) = rejects(wh)
    assert rejected["reason"] == "field_too_long" and rejected["source_row"] == 2


def test_empty_clotho_file_name_is_rejected(tmp_path: Path) -> None:
    body = CLOTHO_HEADER + "a.wav,one,two,three,four,five\n" + ",one,two,three,four,five\n"
    wh = ingest(tmp_path, "clotho", clotho(tmp_path, body.encode()))
    assert clip_ids(wh) == ["clotho:a.wav"]
    (rejected,) = rejects(wh)
    assert (rejected["reason"], rejected["source_row"], rejected["field"]) == (
        "empty_id",
        2,
        "file_name",
    )


def test_one_latin1_byte_in_a_utf8_clotho_file_decodes_per_row(tmp_path: Path) -> None:
    utf8 = "Café crowd.wav,Chatter in a café,Cups clink – loudly,Voices,Talk,Noise\n"
    latin1_row = b"Rain.wav,Rain on a caf" + b"\xe9" + b" roof,two,three,four,five\n"
    wh = ingest(
        tmp_path, "clotho", clotho(tmp_path, CLOTHO_HEADER.encode() + utf8.encode() + latin1_row)
    )
    captions = {r["clip_id"]: r["captions"] for r in wh.rows("SELECT clip_id, captions FROM clips")}
    assert captions["clotho:Café crowd.wav"][:2] == ["Chatter in a café", "Cups clink – loudly"]
    assert captions["clotho:Rain.wav"][0] == "Rain on a café roof"
    assert rejects(wh) == []


def laion_json(folder: Path, stem: str, **original: Any) -> None:
    payload = {
        "text": ["A dog barks"],
        "tag": original.pop("tag", ["dog"]),
        "original_data": {"title": "Dog", "license": "cc-by", **original},
    }
    (folder / f"{stem}.json").write_text(json.dumps(payload))


@pytest.mark.parametrize("field", ["tag", "title", "description", "license", "download_url"])
@pytest.mark.parametrize("value", [42, ["a", "b"], {"k": "v"}], ids=["number", "list", "dict"])
def test_laion_field_of_the_wrong_type_is_dropped_and_named(
    tmp_path: Path, field: str, value: Any
) -> None:
    if field == "tag" and isinstance(value, list):
        value = ["dog", {"nested": 1}]  # a list is a tag's right type; its items are not
    folder = tmp_path / "laion" / "train"
    folder.mkdir(parents=True)
    laion_json(folder, "1")
    laion_json(folder, "2", **{field: value})
    wh = ingest(tmp_path, "laion630k", tmp_path / "laion")
    assert clip_ids(wh) == ["laion630k:1", "laion630k:2"]
    (rejected,) = rejects(wh)
    expected_field = field if field == "tag" else f"original_data.{field}"
    assert (rejected["reason"], rejected["field"], rejected["action"]) == (
        "invalid_type",
        expected_field,
        "field_dropped",
    )
    assert rejected["source_file"].endswith("2.json")


def test_symlink_out_of_the_audio_root_is_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF")
    root = tmp_path / "audio" / "development"
    root.mkdir(parents=True)
    (root / "inside.wav").write_bytes(b"RIFF")
    os.symlink(outside, root / "escape.wav")
    body = CLOTHO_HEADER + "inside.wav,1,2,3,4,5\nescape.wav,1,2,3,4,5\n"
    wh = ingest(tmp_path, "clotho", clotho(tmp_path, body.encode()), tmp_path / "audio")
    assert clip_ids(wh) == ["clotho:inside.wav"]
    (rejected,) = rejects(wh)
    assert (rejected["reason"], rejected["source_row"], rejected["field"]) == (
        "unsafe_audio_path",
        2,
        "audio_path",
    )


def shard_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = json.dumps({"text": ["A dog barks"]}).encode()
        info = tarfile.TarInfo("1.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["shard.tar.gz", "shard.tar"])
def test_compressed_shard_is_rejected_at_ingest(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "laion" / "train"
    folder.mkdir(parents=True)
    (folder / "good.tar").write_bytes(shard_bytes())
    compressed = folder / ("other-" + name)
    compressed.write_bytes(gzip.compress(shard_bytes()))
    wh = ingest(tmp_path, "laion630k", tmp_path / "laion")
    assert clip_ids(wh) == ["laion630k:1"]
    (rejected,) = rejects(wh)
    assert rejected["reason"] == "compressed_shard"
    assert rejected["source_file"] == str(compressed)


def test_a_bad_file_among_good_ones_keeps_the_good_clips(tmp_path: Path) -> None:
    folder = tmp_path / "laion" / "train"
    folder.mkdir(parents=True)
    laion_json(folder, "1")
    (folder / "2.json").write_text("[1, 2")
    shutil.copy(folder / "1.json", folder / "3.json")
    wh = ingest(tmp_path, "laion630k", tmp_path / "laion")
    assert clip_ids(wh) == ["laion630k:1", "laion630k:3"]
    assert [r["reason"] for r in rejects(wh)] == ["invalid_json"]
