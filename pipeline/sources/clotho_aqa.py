"""Clotho-AQA question-answer CSVs.

Format: `clotho_aqa_{train,val,test}.csv` with `file_name,QuestionText,answer` and
possibly `confidence`, published as latin-1. Read as UTF-8 with a per-byte latin-1
fallback (see pipeline.sources.clotho: a latin-1 byte in a UTF-8 file decodes as latin-1,
the UTF-8 text around it stays intact).
Each clip has 6 questions x 3 annotator answers; all rows of a clip become one record
whose `qa` list keeps every (question, answer, confidence) in file order.
Audio lives at `<file_name>` under the audio root.
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
from pipeline.sources.records import ClipRecord, QAPair, Rejection

SOURCE = "clotho-aqa"
SPLITS = ("train", "val", "test")
ENCODING = "latin-1"
COLUMNS = ("file_name", "QuestionText", "answer")


def load(path: Path) -> LoaderOutput:
    files = [(split, path / f"clotho_aqa_{split}.csv") for split in SPLITS]
    files = [(split, f) for split, f in files if f.is_file()]
    if not files:
        raise InputFormatError(path, "no clotho_aqa_<split>.csv found (splits: train, val, test)")
    clip_split: dict[str, str] = {}
    for split, csv_path in files:
        yield from _load_file(csv_path, split, clip_split)


def _load_file(csv_path: Path, split: str, clip_split: dict[str, str]) -> LoaderOutput:
    clips: dict[str, ClipRecord] = {}
    for row_no, row in read_csv_rows(csv_path, COLUMNS, SOURCE, fallback_encoding=ENCODING):
        if isinstance(row, Rejection):
            yield row
            continue
        file_name = row["file_name"].strip()
        clip_id = f"{SOURCE}:{file_name}"
        if not file_name:
            yield reject(
                SOURCE,
                csv_path,
                row_no,
                "empty_id",
                "file_name is empty",
                field="file_name",
                raw=row,
            )
            continue
        question = clean_text(row["QuestionText"])
        answer = clean_text(row["answer"])
        for name, value in (("QuestionText", question), ("answer", answer)):
            if not value:
                yield reject(
                    SOURCE,
                    csv_path,
                    row_no,
                    "empty_text",
                    f"{name} is empty",
                    field=name,
                    record_id=clip_id,
                    raw=row,
                )
                break
        else:
            if clip_id in clip_split and clip_split[clip_id] != split:
                yield reject(
                    SOURCE,
                    csv_path,
                    row_no,
                    "duplicate_id",
                    f"{file_name} already appears in split '{clip_split[clip_id]}'",
                    field="file_name",
                    record_id=clip_id,
                    raw=row,
                )
                continue
            record = clips.get(clip_id)
            if record is None:
                try:
                    if "/" in file_name:
                        raise UnsafeAudioPath(f"file_name {file_name!r} must be a bare file name")
                    audio_path = safe_audio_path(file_name)
                except UnsafeAudioPath as exc:
                    yield reject(
                        SOURCE,
                        csv_path,
                        row_no,
                        "unsafe_audio_path",
                        str(exc),
                        field="file_name",
                        raw=row,
                    )
                    continue
                clip_split[clip_id] = split
                record = ClipRecord(
                    clip_id=clip_id,
                    source=SOURCE,
                    split=normalise_split(split),
                    source_split=split,
                    audio_path=audio_path,
                    title=file_name.rsplit(".", 1)[0].replace("_", " "),
                    source_file=str(csv_path),
                    source_row=row_no,
                )
                clips[clip_id] = record
            confidence = clean_text(row.get("confidence")) or None
            record.qa.append(QAPair(question=question, answer=answer, confidence=confidence))
    yield from clips.values()
