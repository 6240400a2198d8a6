"""Clotho v2.1: caption CSVs joined with metadata CSVs.

Format, per split (`development`, `validation`, `evaluation`):
`clotho_captions_<split>.csv` with `file_name,caption_1..caption_5` and
`clotho_metadata_<split>.csv` with
`file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license`.
Published encoding is ISO-8859-1; keywords are separated by `;`. Audio lives at
`<split>/<file_name>` under the audio root.

Encoding rule (per row, never per file): every file is read as UTF-8, and only the bytes
that are not valid UTF-8 are decoded as ISO-8859-1 (each such byte is one latin-1
character). So a UTF-8 file stays UTF-8, a latin-1 file reads as latin-1, and a mostly
UTF-8 file with one latin-1 byte keeps its UTF-8 text intact instead of turning every
multibyte character into mojibake (which a whole-file fallback would do). The one case
this reads wrongly is a latin-1 pair of characters that happens to form valid UTF-8
(e.g. `Ã©`), which does not occur in English captions.

A row with an empty `file_name` is rejected (`empty_id`); it would name no clip.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.errors import InputFormatError
from pipeline.sources.common import (
    LoaderOutput,
    UnsafeAudioPath,
    clean_text,
    normalise_split,
    read_csv_rows,
    reject,
    safe_audio_path,
)
from pipeline.sources.records import ClipRecord, Rejection

SOURCE = "clotho"
SPLITS = ("development", "validation", "evaluation")
ENCODING = "iso-8859-1"
CAPTION_COLUMNS = ("file_name", "caption_1", "caption_2", "caption_3", "caption_4", "caption_5")
METADATA_COLUMNS = ("file_name", "keywords", "sound_id", "sound_link", "license")


def load(path: Path) -> LoaderOutput:
    found = [split for split in SPLITS if (path / f"clotho_captions_{split}.csv").is_file()]
    if not found:
        raise InputFormatError(
            path, f"no clotho_captions_<split>.csv found (splits: {', '.join(SPLITS)})"
        )
    seen: set[str] = set()
    for split in found:
        yield from _load_split(path, split, seen)


def _load_metadata(path: Path) -> tuple[dict[str, tuple[int, dict[str, str]]], list[Rejection]]:
    if not path.is_file():
        return {}, []
    rows: dict[str, tuple[int, dict[str, str]]] = {}
    rejected: list[Rejection] = []
    for row_no, row in read_csv_rows(path, METADATA_COLUMNS, SOURCE, fallback_encoding=ENCODING):
        if isinstance(row, Rejection):
            rejected.append(row)
        else:
            rows.setdefault(row["file_name"].strip(), (row_no, row))
    return rows, rejected


def _load_split(path: Path, split: str, seen: set[str]) -> LoaderOutput:
    captions_path = path / f"clotho_captions_{split}.csv"
    metadata_path = path / f"clotho_metadata_{split}.csv"
    metadata, metadata_rejects = _load_metadata(metadata_path)
    yield from metadata_rejects
    for row_no, row in read_csv_rows(
        captions_path, CAPTION_COLUMNS, SOURCE, fallback_encoding=ENCODING
    ):
        if isinstance(row, Rejection):
            yield row
            continue
        file_name = row["file_name"].strip()
        clip_id = f"{SOURCE}:{file_name}"
        if not file_name:
            yield reject(
                SOURCE,
                captions_path,
                row_no,
                "empty_id",
                "file_name is empty: the row names no clip",
                field="file_name",
                raw=row,
            )
            continue
        try:
            if "/" in file_name:
                raise UnsafeAudioPath(f"file_name {file_name!r} must be a bare file name")
            audio_path = safe_audio_path(f"{split}/{file_name}")
        except UnsafeAudioPath as exc:
            yield reject(
                SOURCE,
                captions_path,
                row_no,
                "unsafe_audio_path",
                str(exc),
                field="file_name",
                raw=row,
            )
            continue
        if clip_id in seen:
            yield reject(
                SOURCE,
                captions_path,
                row_no,
                "duplicate_id",
                f"file_name {file_name} appears more than once",
                field="file_name",
                record_id=clip_id,
                raw=row,
            )
            continue
        captions: list[str] = []
        empty_fields: list[str] = []
        for column in CAPTION_COLUMNS[1:]:
            text = clean_text(row.get(column))
            (captions if text else empty_fields).append(text or column)
        if not captions:
            yield reject(
                SOURCE,
                captions_path,
                row_no,
                "empty_caption",
                "all five captions are empty",
                field="caption_1",
                record_id=clip_id,
                raw=row,
            )
            continue
        for column in empty_fields:
            yield reject(
                SOURCE,
                captions_path,
                row_no,
                "empty_caption",
                f"{column} is empty; clip kept with {len(captions)} captions",
                field=column,
                record_id=clip_id,
                action="field_dropped",
            )
        seen.add(clip_id)
        meta_row_no, meta = metadata.get(file_name, (None, {}))
        if metadata and meta_row_no is None:
            yield reject(
                SOURCE,
                metadata_path,
                None,
                "missing_metadata",
                f"no metadata row for {file_name}; clip kept without tags/license",
                field="file_name",
                record_id=clip_id,
                action="field_dropped",
            )
        tags = [clean_text(k) for k in (meta.get("keywords") or "").split(";") if clean_text(k)]
        yield ClipRecord(
            clip_id=clip_id,
            source=SOURCE,
            split=normalise_split(split),
            source_split=split,
            audio_path=audio_path,
            captions=captions,
            tags=tags,
            title=file_name.rsplit(".", 1)[0].replace("_", " "),
            license=clean_text(meta.get("license")) or None,
            url=clean_text(meta.get("sound_link")) or None,
            extra={
                k: clean_text(meta.get(k))
                for k in ("sound_id", "manufacturer", "start_end_samples")
                if meta.get(k)
            },
            source_file=str(captions_path),
            source_row=row_no,
        )
