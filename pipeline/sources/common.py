"""What every corpus loader shares: safe audio paths, tolerant CSV reading, text cleanup.

Each loader yields `ClipRecord`s and `Rejection`s in input order; it never raises for a
bad row (that becomes a Rejection) and raises `InputFormatError` only when a whole
file is unusable (missing, wrong columns). `read_csv_rows` is the one CSV reader of every
loader: it turns a short row, an over-long cell, a stray quote that swallowed later rows,
or an unparseable record into a Rejection naming file, row and field.
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
_SURROGATE_RUN_RE = re.compile(r"[\udc80-\udcff]+")
MAX_FIELD_CHARS = 131_072  # longer cells are rejected (`field_too_long`): no caption is this long
READER_FIELD_LIMIT = 16 * 1024 * 1024  # what the csv reader accepts before it errors
RAW_PREVIEW_CHARS = 500
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


def fallback_decode(value: str, encoding: str) -> str:
    """Re-decode the bytes UTF-8 could not decode (kept as surrogates) with `encoding`,
    leaving the valid UTF-8 around them as it is."""
    return _SURROGATE_RUN_RE.sub(
        lambda m: m.group().encode("utf-8", "surrogateescape").decode(encoding, "replace"),
        value,
    )


def _looks_like_row(line: str, columns: int) -> bool:
    return columns > 1 and line.count(",") >= columns - 1


def read_csv_rows(
    path: Path,
    required: Sequence[str],
    source: str,
    fallback_encoding: str | None = None,
) -> Iterator[tuple[int, dict[str, str] | Rejection]]:
    """Yield (1-based data row number, row) after checking the header has `required`.

    The file is read as UTF-8. With `fallback_encoding`, bytes that are not UTF-8 are
    decoded with it, per run of bad bytes (a mostly-UTF-8 file with one latin-1 byte keeps
    its UTF-8 text intact); without, they stay as surrogates for the caller to reject.

    A row that cannot be used whole comes back as a `Rejection` in place of the dict:

    * `short_row`: fewer cells than the header names (the first missing column is named);
    * `field_too_long`: a cell over MAX_FIELD_CHARS characters;
    * `stray_quote`: a quoted cell runs over line breaks into lines that are themselves
      rows of this file (>= columns - 1 commas): an unclosed quote swallowed them. The
      record is rejected and the detail names the physical lines it swallowed;
    * `csv_error`: the csv module could not parse the record (e.g. a NUL byte).
    """
    _raise_reader_field_limit()
    with open_text(path, "utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip().lstrip("\ufeff") for name in (reader.fieldnames or [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise InputFormatError(
                path,
                f"missing required column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}",
                field=missing[0],
            )
        if fallback_encoding:
            header = [fallback_decode(name, fallback_encoding) for name in header]
        reader.fieldnames = header
        index = 0
        last_line = reader.line_num
        while True:
            index += 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield (
                    index,
                    reject(source, path, index, "csv_error", f"line {reader.line_num}: {exc}"),
                )
                last_line = reader.line_num
                continue
            first_line, last_line = last_line + 1, reader.line_num
            if None in row:  # more cells than header names
                extra = row.pop(None)
                row["__extra__"] = ",".join(extra or [])
            yield (
                index,
                _checked_row(
                    path, source, index, row, header, first_line, last_line, fallback_encoding
                ),
            )


def _checked_row(
    path: Path,
    source: str,
    index: int,
    row: dict[str, str],
    header: list[str],
    first_line: int,
    last_line: int,
    fallback_encoding: str | None,
) -> dict[str, str] | Rejection:
    short = [name for name in header if row.get(name) is None]
    if short:
        present = len(header) - len(short)
        return reject(
            source,
            path,
            index,
            "short_row",
            f"row has {present} of {len(header)} columns; '{short[0]}' is missing",
            field=short[0],
            raw=row,
        )
    for name, value in row.items():
        if len(value) > MAX_FIELD_CHARS:
            return reject(
                source,
                path,
                index,
                "field_too_long",
                f"{len(value)} characters (limit {MAX_FIELD_CHARS})",
                field=name,
                raw=value[:RAW_PREVIEW_CHARS],
            )
    if last_line > first_line:
        for name, value in row.items():
            swallowed = [
                line for line in value.splitlines()[1:] if _looks_like_row(line, len(header))
            ]
            if swallowed:
                return reject(
                    source,
                    path,
                    index,
                    "stray_quote",
                    f"a quote opened in '{name}' at line {first_line} is closed only at line "
                    f"{last_line}: it swallowed {len(swallowed)} line(s) that look like rows",
                    field=name,
                    raw=value[:RAW_PREVIEW_CHARS],
                )
    if fallback_encoding:
        return {k: fallback_decode(v, fallback_encoding) for k, v in row.items()}
    return row


def _raise_reader_field_limit() -> None:
    # The csv module refuses cells over 131,072 characters with an exception that ends
    # the whole file; raise its limit so such a cell is read and rejected as one row.
    if csv.field_size_limit() < READER_FIELD_LIMIT:
        csv.field_size_limit(READER_FIELD_LIMIT)


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
