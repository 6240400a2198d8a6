"""AudioCaps (v1 and v2.0) caption CSVs.

Format: `train.csv`, `val.csv`, `test.csv` with columns
`audiocap_id,youtube_id,start_time,caption`, UTF-8. v1 train has one caption per clip,
val/test five rows per clip; v2.0 train has several, lower-cased. A clip is the pair
(youtube_id, start_time); its rows are grouped into one record with all captions.

Audio layout (relative to the audio root): `<split file stem>/Y<youtube_id>.wav`, the
layout ReasonAQA's `AudioCapsLarger/{split}/Y<id>.wav` paths use.
"""

from __future__ import annotations

import math
import re
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
    undecodable_field,
)
from pipeline.sources.records import ClipRecord, Rejection

SOURCE = "audiocaps"
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
SPLIT_FILES = ("train.csv", "val.csv", "test.csv")
_YOUTUBE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def csv_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = [path / name for name in SPLIT_FILES if (path / name).is_file()]
    if not files:
        raise InputFormatError(path, f"no AudioCaps CSV found (expected {', '.join(SPLIT_FILES)})")
    return files


def start_seconds(text: str) -> int | None:
    """Whole seconds of a start_time cell; None for text, inf, nan or a negative time."""
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return int(value)


def load(path: Path) -> LoaderOutput:
    seen_caption_ids: set[str] = set()
    seen_clips: dict[str, str] = {}
    for csv_path in csv_files(path):
        yield from _load_file(csv_path, seen_caption_ids, seen_clips)


def _load_file(
    csv_path: Path, seen_caption_ids: set[str], seen_clips: dict[str, str]
) -> LoaderOutput:
    source_split = csv_path.stem
    clips: dict[str, ClipRecord] = {}
    for row_no, row in read_csv_rows(csv_path, COLUMNS, SOURCE):
        if isinstance(row, Rejection):
            yield row
            continue
        bad_field = undecodable_field(row)
        if bad_field:
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "undecodable_bytes",
                "bytes that are not valid UTF-8",
                field=bad_field,
                raw=row,
            )
            continue
        caption_id = row["audiocap_id"].strip()
        youtube_id = row["youtube_id"].strip()
        if not _YOUTUBE_ID_RE.match(youtube_id):
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "invalid_value",
                f"youtube_id {youtube_id!r} is not a YouTube id",
                field="youtube_id",
                raw=row,
            )
            continue
        start = start_seconds(row["start_time"])
        if start is None:
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "invalid_value",
                f"start_time {row['start_time']!r} is not a finite number of seconds >= 0",
                field="start_time",
                raw=row,
            )
            continue
        caption = clean_text(row["caption"])
        if not caption:
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "empty_caption",
                "caption is empty",
                field="caption",
                raw=row,
            )
            continue
        if caption_id in seen_caption_ids:
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "duplicate_id",
                f"audiocap_id {caption_id} appears more than once",
                field="audiocap_id",
                raw=row,
            )
            continue
        seen_caption_ids.add(caption_id)
        clip_id = f"{SOURCE}:{youtube_id}_{start}"
        if clip_id in seen_clips and seen_clips[clip_id] != source_split:
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "duplicate_id",
                f"clip {clip_id} is already in split '{seen_clips[clip_id]}'",
                field="youtube_id",
                record_id=clip_id,
                raw=row,
            )
            continue
        record = clips.get(clip_id)
        if record is None:
            try:
                audio_path = safe_audio_path(f"{source_split}/Y{youtube_id}.wav")
            except UnsafeAudioPath as exc:
                yield reject(
                    SOURCE,
                    csv_path,
                    row_no,
                    "unsafe_audio_path",
                    str(exc),
                    field="youtube_id",
                    raw=row,
                )
                continue
            seen_clips[clip_id] = source_split
            record = ClipRecord(
                clip_id=clip_id,
                source=SOURCE,
                split=normalise_split(source_split),
                source_split=source_split,
                audio_path=audio_path,
                duration_s=10.0,
                url=f"https://www.youtube.com/watch?v={youtube_id}&t={start}s",
                extra={"youtube_id": youtube_id, "start_time": start, "audiocap_ids": []},
                source_file=str(csv_path),
                source_row=row_no,
            )
            clips[clip_id] = record
        record.captions.append(caption)
        record.extra["audiocap_ids"].append(caption_id)
    yield from clips.values()
