"""`auditorybench-csv` against the published AuditoryBench files (HJ-Ok/AudioBERT, commit
4fc71aee2dd209093614d80dcc0b2428f8c51bf2, `dataset/animal_sound_recognition_wiki.csv` and
`dataset/sound_pitch_comparsion_wiki.csv`): the fixtures are their first seven lines,
byte for byte. Also the published pitch pairing (one broad category, each clip once)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest

from pipeline.tasks.auditorybench.animal import wiki_items
from pipeline.tasks.auditorybench.export import (
    ANIMAL_COLUMNS,
    PITCH_WIKI_COLUMNS,
    animal_row,
    csv_text,
    pitch_row,
    write_animal_csv,
    write_pitch_csv,
)
from pipeline.tasks.auditorybench.pitch_comparison import PitchTask, one_use_pairs
from pipeline.tasks.common.base import ExportOptions

FIXTURES = Path(__file__).parent / "fixtures"
ANIMAL_WIKI = FIXTURES / "animal_sound_recognition_wiki_head.csv"
PITCH_WIKI = FIXTURES / "sound_pitch_comparsion_wiki_head.csv"


def published(path: Path) -> tuple[bytes, list[dict[str, str]]]:
    raw = path.read_bytes()
    return raw, list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))


def as_row(draft, split: str = "wiki") -> dict:
    return {
        "split": split,
        "input": draft.input,
        "answer": draft.answer,
        "spans": draft.spans,
        "clip_ids": draft.clip_ids,
        "facts": None,
    }


def animal_wiki_as_our_rows(rows: list[dict[str, str]]) -> list[dict]:
    return [
        {
            "split": "wiki",
            "answer": r["animal"].lower(),
            "spans": [r["description"]],
            "input": f"{r['description']} is the sound a [MASK] makes.",
            "clip_ids": [],
        }
        for r in rows
    ]


def test_published_animal_wiki_rows_round_trip_byte_for_byte(tmp_path: Path) -> None:
    raw, rows = published(ANIMAL_WIKI)
    ours = animal_wiki_as_our_rows(rows)
    assert [r["input"] for r in ours] == [r["sentence"] for r in rows]  # same construction
    (path,) = write_animal_csv(ours, tmp_path, ExportOptions())
    assert path.name == "animal_sound_recognition_wiki.csv"
    assert path.read_bytes() == raw


def test_published_pitch_wiki_rows_round_trip_byte_for_byte(tmp_path: Path) -> None:
    raw, rows = published(PITCH_WIKI)
    ours = [
        {
            "split": "wiki",
            "answer": r["answer"],
            "spans": [r["span1"], r["span2"]],
            "input": f"The sound of {r['span1']} is [MASK] than the sound of {r['span2']}",
            "clip_ids": [],
            "facts": None,
        }
        for r in rows
    ]
    assert [r["input"] for r in ours] == [r["sentence"] for r in rows]
    (path,) = write_pitch_csv(ours, tmp_path, ExportOptions(extra_columns=True))
    assert path.read_bytes() == raw  # wiki files never take extra columns


def test_our_wiki_items_take_the_published_layout() -> None:
    animal_raw, _ = published(ANIMAL_WIKI)
    text = csv_text((animal_row(as_row(d)) for d in wiki_items()), ANIMAL_COLUMNS, "\r\n")
    assert text.split("\r\n")[0].encode() == animal_raw.split(b"\r\n")[0]
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert parsed and all(r["animal"][:1].isupper() for r in parsed)
    assert all(r["sentence"] == f"{r['description']} is the sound a [MASK] makes." for r in parsed)

    pitch_raw, _ = published(PITCH_WIKI)
    drafts = PitchTask().wiki_items(seed=0)
    text = csv_text((pitch_row(as_row(d)) for d in drafts), PITCH_WIKI_COLUMNS)
    assert text.split("\n")[0].encode() == pitch_raw.split(b"\n")[0]
    for r in csv.DictReader(io.StringIO(text, newline="")):
        assert (
            r["sentence"] == f"The sound of {r['span1']} is [MASK] than the sound of {r['span2']}"
        )
        assert not r["span1"].startswith(("a ", "an ", "the "))  # bare source names


@pytest.mark.parametrize("count", [2, 7, 40])
def test_published_pairing_uses_each_clip_once(count: int) -> None:
    clips = [f"laion630k:{n}" for n in range(count)]
    pairs = one_use_pairs(clips, seed=3)
    uses = Counter(c for pair in pairs for c in pair)
    assert len(pairs) == count // 2 and set(uses.values()) == {1}
    assert one_use_pairs(clips, seed=4) != pairs or count == 2  # the order is seeded


def test_pairing_option_is_checked_and_versioned() -> None:
    assert PitchTask().config()["pairing"] == "published"
    assert PitchTask(pairing="ring").config()["pairing"] == "ring"
    with pytest.raises(ValueError, match="pairing must be one of published, ring"):
        PitchTask(pairing="random")


def test_pengi_frames_animal_clips_as_classification_and_skips_audio_less_items() -> None:
    from pipeline.tasks.common.pengi import pengi_record

    clip = {"item_id": "i1", "task": "auditorybench-animal", "subtask": "clip",
            "audio_paths": ["/data/a.flac"], "input": "A [MASK] barks.", "answer": "dog"}  # fmt: skip
    assert pengi_record(clip) == {
        "key": "i1",
        "task": "auditorybench-animal",
        "template": "this is a sound of",
        "audio": "/data/a.flac",
        "prompt": "this is a sound of",
        "target": "dog",
    }
    assert pengi_record({**clip, "subtask": "wiki", "audio_paths": []}) is None
    pitch = {**clip, "task": "auditorybench-pitch", "audio_paths": ["/a", "/b"],
             "input": "A is [MASK] than B.", "answer": "higher"}  # fmt: skip
    assert pengi_record(pitch)["prompt"] == "question: A is [MASK] than B."  # type: ignore[index]
