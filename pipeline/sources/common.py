"""What every corpus loader shares: safe audio paths, tolerant CSV reading, text cleanup.

Each loader yields `ClipRecord`s and `Rejection`s in input order; it never raises for a
bad row (that becomes a Rejection) and raises `InputFormatError` only when a whole
file is unusable (missing, wrong columns).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from pipeline.errors import InputFormatError
from pipeline.sources.records import ClipRecord, Rejection

LoaderOutput = Iterator[ClipRecord | Rejection]

_SURROGATE_RE = re.compile(r"[\udc80-\udcff]")
_WINDOWS_DRIVE_RE = re.compile(r"^[A-Za-z]:")

CLIP_SPLITS = {
    "train": "train",
    "development": "train",
    "dev": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "test": "test",
    "evaluation": "test",
    "eval": "test",
}


class UnsafeAudioPath(ValueError):
    pass


def safe_audio_path(raw: str) -> str:
    """A POSIX path relative to the audio root, or UnsafeAudioPath if it could escape it."""
    text = raw.strip()
    if not text:
        raise UnsafeAudioPath("empty audio path")
    if "\x00" in text:
        raise UnsafeAudioPath("audio path contains a NUL byte")
    if "\\" in text or _WINDOWS_DRIVE_RE.match(text):
        raise UnsafeAudioPath(f"audio path {text!r} is not a relative POSIX path")
    if text.startswith("/"):
        raise UnsafeAudioPath(f"audio path {text!r} is absolute")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise UnsafeAudioPath(f"audio path {text!r} escapes the audio root with '..'")
    if not parts:
        raise UnsafeAudioPath(f"audio path {text!r} names no file")
    return "/".join(parts)


def normalise_split(name: str | None) -> str | None:
    if name is None:
        return None
    return CLIP_SPLITS.get(name.strip().lower())


def clean_text(value: str | None) -> str:
    return " ".join((value or "").split())


def undecodable_field(row: dict[str, str]) -> str | None:
    """Name of the first field holding bytes that did not decode (read as surrogates)."""
    for key, value in row.items():
        if value is not None and _SURROGATE_RE.search(value):
            return key
    return None


def printable_raw(row: dict[str, str] | str) -> str:
    text = row if isinstance(row, str) else repr(row)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    """Open a text file so undecodable bytes survive as surrogates and can be rejected per row."""
    if not path.is_file():
        raise InputFormatError(path, "file not found")
    return open(path, encoding=encoding, errors="surrogateescape", newline="")


def read_csv_rows(
    path: Path, required: Sequence[str], encoding: str = "utf-8"
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (1-based data row number, row) after checking the header has `required`."""
    with open_text(path, encoding) as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lstrip("\ufeff") for name in (reader.fieldnames or [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise InputFormatError(
                path,
                f"missing required column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}",
                field=missing[0],
            )
        reader.fieldnames = header
        for index, row in enumerate(reader, start=1):
            if None in row:  # more cells than header names
                extra = row.pop(None)
                row["__extra__"] = ",".join(extra or [])
            yield index, row


def reject(
    source: str,
    path: Path,
    row: int | None,
    reason: str,
    detail: str,
    *,
    field: str | None = None,
    record_id: str | None = None,
    raw: dict[str, str] | str | None = None,
    action: str = "row_rejected",
) -> Rejection:
    return Rejection(
        source=source,
        source_file=str(path),
        source_row=row,
        record_id=record_id,
        field=field,
        reason=reason,
        action=action,  # type: ignore[arg-type]
        detail=detail,
        raw=None if raw is None else printable_raw(raw),
    )


def detect_encoding(path: Path, declared: str) -> str:
    """UTF-8 when the whole file decodes as UTF-8, else the corpus's declared encoding."""
    if not path.is_file():
        raise InputFormatError(path, "file not found")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return declared
    return "utf-8"
