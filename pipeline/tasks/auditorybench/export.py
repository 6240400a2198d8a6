"""`auditorybench-csv`: the published AuditoryBench file names and columns.

* `animal_sound_recognition_{split}.csv`: `animal,description,sentence`
  (`description` is the sound span).
* `sound_pitch_comparsion_{split}.csv` (the published spelling, so existing loaders find
  it): `sentence,answer,span1,span2`.

With `extra_columns`, our columns follow the published ones (for pitch the first
published version's `id_1,id_2,audio_filename_1,audio_filename_2,avg_pitch_1,avg_pitch_2,
difference_percentage` plus voiced fractions and lineage). Written with the csv module,
minimal quoting and `\\n` line ends, like the published files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.tasks.common.export import atomic_write_text, rows_by_split

if TYPE_CHECKING:
    from pipeline.tasks.common.base import ExportOptions

FORMAT = "auditorybench-csv"
ANIMAL_COLUMNS = ("animal", "description", "sentence")
PITCH_COLUMNS = ("sentence", "answer", "span1", "span2")
LINEAGE_COLUMNS = ("item_id", "subtask", "model", "prompt_version", "llm_call_key", "filter_status")
ANIMAL_EXTRA = ("clip_id", "audio_filename", "category", *LINEAGE_COLUMNS)
PITCH_EXTRA = (
    "id_1",
    "id_2",
    "audio_filename_1",
    "audio_filename_2",
    "avg_pitch_1",
    "avg_pitch_2",
    "difference_percentage",
    "voiced_fraction_1",
    "voiced_fraction_2",
    *LINEAGE_COLUMNS,
)


def animal_row(row: dict[str, Any]) -> dict[str, Any]:
    facts = json.loads(row["facts"]) if row.get("facts") else {}
    clip_ids, paths = row.get("clip_ids") or [], row.get("audio_paths") or []
    return {
        "animal": row["answer"],
        "description": (row.get("spans") or [""])[0],
        "sentence": row["input"],
        "clip_id": clip_ids[0] if clip_ids else "",
        "audio_filename": paths[0] if paths else "",
        "category": facts.get("category", ""),
        **{name: row.get(name) or "" for name in LINEAGE_COLUMNS},
    }


def pitch_row(row: dict[str, Any]) -> dict[str, Any]:
    facts = json.loads(row["facts"]) if row.get("facts") else {}
    spans = [*list(row.get("spans") or []), "", ""]
    clip_ids = [*list(row.get("clip_ids") or []), "", ""]
    paths = [*list(row.get("audio_paths") or []), "", ""]
    return {
        "sentence": row["input"],
        "answer": row["answer"],
        "span1": spans[0],
        "span2": spans[1],
        "id_1": clip_ids[0],
        "id_2": clip_ids[1],
        "audio_filename_1": paths[0],
        "audio_filename_2": paths[1],
        **{
            name: facts.get(name, "")
            for name in (
                "avg_pitch_1",
                "avg_pitch_2",
                "difference_percentage",
                "voiced_fraction_1",
                "voiced_fraction_2",
            )
        },
        **{name: row.get(name) or "" for name in LINEAGE_COLUMNS},
    }


def _write(
    rows: list[dict[str, Any]],
    out_dir: Path,
    name: str,
    columns: tuple[str, ...],
    convert: Callable[[dict[str, Any]], dict[str, Any]],
) -> list[Path]:
    written = []
    for split, split_rows in rows_by_split(rows).items():
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(convert(row) for row in split_rows)
        path = out_dir / name.format(split=split)
        atomic_write_text(path, buffer.getvalue())
        written.append(path)
    return written


def write_animal_csv(
    rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
) -> list[Path]:
    columns = ANIMAL_COLUMNS + (ANIMAL_EXTRA if options.extra_columns else ())
    return _write(rows, out_dir, "animal_sound_recognition_{split}.csv", columns, animal_row)


def write_pitch_csv(
    rows: list[dict[str, Any]], out_dir: Path, options: ExportOptions
) -> list[Path]:
    columns = PITCH_COLUMNS + (PITCH_EXTRA if options.extra_columns else ())
    return _write(rows, out_dir, "sound_pitch_comparsion_{split}.csv", columns, pitch_row)
