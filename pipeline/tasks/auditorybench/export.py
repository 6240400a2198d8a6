"""`auditorybench-csv`: the published AuditoryBench file names and columns.

* `animal_sound_recognition_{split}.csv`: `animal,description,sentence`
  (`description` is the sound span).
* `sound_pitch_comparsion_{split}.csv` (the published spelling, so existing loaders find
  it): `sentence,answer,span1,span2`.

* wiki split, as the published wiki files (`HJ-Ok/AudioBERT`, `dataset/*_wiki.csv`):
  animal `animal,description,sentence` with the animal name capitalised (`Alligator,
  bellow,bellow is the sound a [MASK] makes.`) and `\\r\\n` line ends; pitch
  `span1,span2,sentence,answer` with bare source names and no final period (`Bass,alto,
  The sound of Bass is [MASK] than the sound of alto,lower`).

With `extra_columns`, pitch files take the first published version's columns in its order
(`id_1,id_2,audio_filename_1,audio_filename_2,sentence,answer,span1,span2,avg_pitch_1,
avg_pitch_2,difference_percentage,answer_pitch`), then voiced fractions and lineage;
animal files add ours after the published three. As in that
release, ids are the clips' integer Freesound ids and audio file names are relative to
the LAION-Audio-630K Freesound folder (`train/199328.flac`): never a local absolute path.
Written with the csv module, minimal quoting and `\\n` line ends (wiki animal: `\\r\\n`),
like the published files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.tasks.common.export import atomic_writer
from pipeline.tasks.common.streaming import split_groups

if TYPE_CHECKING:
    from pipeline.tasks.common.base import ExportOptions

FORMAT = "auditorybench-csv"
ANIMAL_COLUMNS = ("animal", "description", "sentence")
PITCH_COLUMNS = ("sentence", "answer", "span1", "span2")
PITCH_WIKI_COLUMNS = ("span1", "span2", "sentence", "answer")
LINEAGE_COLUMNS = ("item_id", "subtask", "model", "prompt_version", "llm_call_key", "filter_status")
ANIMAL_EXTRA = ("clip_id", "audio_filename", "category", *LINEAGE_COLUMNS)
# The first published version (`sound_pitch_comparsion_dev_with_pitch.csv`), column for column.
PITCH_RELEASE_COLUMNS = (
    "id_1",
    "id_2",
    "audio_filename_1",
    "audio_filename_2",
    *PITCH_COLUMNS,
    "avg_pitch_1",
    "avg_pitch_2",
    "difference_percentage",
    "answer_pitch",
)
PITCH_EXTRA = ("voiced_fraction_1", "voiced_fraction_2", *LINEAGE_COLUMNS)


def release_clip_fields(clip: dict[str, Any]) -> dict[str, Any]:
    """A LAION clip as the published release names it: integer Freesound id, relative file.

    The file is `<source split>/<stem>.flac`, as in LAION-Audio-630K's Freesound part.
    """
    extra = clip.get("extra")
    extra = json.loads(extra) if isinstance(extra, str) else (extra or {})
    freesound_id = str(extra.get("freesound_id") or "")
    stem = str(clip["clip_id"]).split(":", 1)[-1]
    return {
        "id": int(freesound_id) if freesound_id.isdigit() else None,
        "audio_filename": f"{clip.get('source_split') or clip.get('split')}/{stem}.flac",
    }


def _capitalised(name: str) -> str:
    return name[:1].upper() + name[1:]


def animal_row(row: dict[str, Any]) -> dict[str, Any]:
    facts = json.loads(row["facts"]) if row.get("facts") else {}
    clip_ids = row.get("clip_ids") or []
    wiki = row.get("split") == "wiki"
    return {
        "animal": _capitalised(row["answer"]) if wiki else row["answer"],
        "description": (row.get("spans") or [""])[0],
        "sentence": row["input"],
        "clip_id": clip_ids[0] if clip_ids else "",
        "audio_filename": facts.get("audio_filename", ""),
        "category": facts.get("category", ""),
        **{name: row.get(name) or "" for name in LINEAGE_COLUMNS},
    }


def pitch_row(row: dict[str, Any]) -> dict[str, Any]:
    facts = json.loads(row["facts"]) if row.get("facts") else {}
    spans = [*list(row.get("spans") or []), "", ""]
    return {
        "sentence": row["input"],
        "answer": row["answer"],
        "span1": spans[0],
        "span2": spans[1],
        # Measured label, beside the sentence's label as in the first published version.
        "answer_pitch": row["answer"] if "avg_pitch_1" in facts else "",
        **{
            name: facts.get(name, "")
            for name in (
                "id_1",
                "id_2",
                "audio_filename_1",
                "audio_filename_2",
                "avg_pitch_1",
                "avg_pitch_2",
                "difference_percentage",
                "voiced_fraction_1",
                "voiced_fraction_2",
            )
        },
        **{name: row.get(name) or "" for name in LINEAGE_COLUMNS},
    }


def csv_text(
    records: Iterable[dict[str, Any]], columns: tuple[str, ...], line_end: str = "\n"
) -> str:
    """CSV as the published files write it: header, minimal quoting, the given line end."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=columns, extrasaction="ignore", lineterminator=line_end
    )
    writer.writeheader()
    writer.writerows(records)
    return buffer.getvalue()


def _write(
    rows: Iterable[dict[str, Any]],
    out_dir: Path,
    name: str,
    layout: Callable[[str], tuple[tuple[str, ...], str]],
    convert: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[Path]:
    """One CSV per split, row by row from rows grouped by split (see `csv_text`)."""
    written = []
    for split, split_rows in split_groups(rows):
        columns, line_end = layout(split)
        path = out_dir / name.format(split=split)
        with atomic_writer(path) as handle:
            writer = csv.DictWriter(
                handle, fieldnames=columns, extrasaction="ignore", lineterminator=line_end
            )
            writer.writeheader()
            writer.writerows(convert(r) for r in split_rows)
        written.append(path)
    return written


def write_animal_csv(
    rows: Iterable[dict[str, Any]], out_dir: Path, options: ExportOptions
) -> list[Path]:
    def layout(split: str) -> tuple[tuple[str, ...], str]:
        if split == "wiki":
            return ANIMAL_COLUMNS, "\r\n"
        return ANIMAL_COLUMNS + (ANIMAL_EXTRA if options.extra_columns else ()), "\n"

    return _write(rows, out_dir, "animal_sound_recognition_{split}.csv", layout, animal_row)


def write_pitch_csv(
    rows: Iterable[dict[str, Any]], out_dir: Path, options: ExportOptions
) -> list[Path]:
    def layout(split: str) -> tuple[tuple[str, ...], str]:
        if split == "wiki":
            return PITCH_WIKI_COLUMNS, "\n"
        if options.extra_columns:
            return PITCH_RELEASE_COLUMNS + PITCH_EXTRA, "\n"
        return PITCH_COLUMNS, "\n"

    return _write(rows, out_dir, "sound_pitch_comparsion_{split}.csv", layout, pitch_row)
