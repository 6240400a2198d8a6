"""LAION-Audio-630K: one clip's JSON payload (`<id>.json`) → a ClipRecord.

Shared by both layouts of pipeline.sources.laion630k (JSON folder, tar shards). The JSON
holds `text` (captions), `tag` (list) and `original_data` (title, description, license,
username, download_url, id). A text field of `original_data` that is a number, list or
object, and a `tag` that is not a string or a list of strings, are dropped from the clip
with a `field_dropped` reject (`invalid_type`, naming the file and the field); the clip is
kept with its captions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.sources.common import (
    UnsafeAudioPath,
    clean_text,
    normalise_split,
    reject,
    safe_audio_path,
)
from pipeline.sources.records import ClipRecord, Rejection

if TYPE_CHECKING:
    from pipeline.sources.laion630k import FreesoundMeta

SOURCE = "laion630k"
TEXT_FIELDS = ("title", "description", "license", "download_url")


def clip_id_of(stem: str) -> str:
    return f"{SOURCE}:{stem}"


def payload_record(
    payload: Any,
    stem: str,
    audio_rel: str | None,
    source_file: Path,
    row: int | None,
    split: str | None,
    seen: set[str],
    meta: FreesoundMeta | None,
    duration: float | None = None,
) -> list[ClipRecord | Rejection]:
    """The clip of one JSON payload (with `field_dropped` rejects for bad fields), or
    one row rejection."""
    clip_id = clip_id_of(stem)
    if not isinstance(payload, dict):
        return [
            reject(
                SOURCE,
                source_file,
                row,
                "invalid_json",
                "top level is not an object",
                record_id=clip_id,
            )
        ]
    texts = payload.get("text")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list):
        return [
            reject(
                SOURCE,
                source_file,
                row,
                "invalid_value",
                "'text' is not a list of captions",
                field="text",
                record_id=clip_id,
                raw=json.dumps(payload)[:500],
            )
        ]
    captions = [clean_text(t) for t in texts if isinstance(t, str) and clean_text(t)]
    if not captions:
        return [
            reject(
                SOURCE,
                source_file,
                row,
                "empty_caption",
                "no non-empty caption in 'text'",
                field="text",
                record_id=clip_id,
                raw=json.dumps(payload)[:500],
            )
        ]
    audio_field = payload.get("audio_path")
    try:
        audio_path = safe_audio_path(
            audio_field if isinstance(audio_field, str) else audio_rel or ""
        )
    except UnsafeAudioPath as exc:
        return [
            reject(
                SOURCE,
                source_file,
                row,
                "unsafe_audio_path",
                str(exc),
                field="audio_path",
                record_id=clip_id,
            )
        ]
    if clip_id in seen:
        return [
            reject(
                SOURCE,
                source_file,
                row,
                "duplicate_id",
                f"clip {stem} appears more than once",
                record_id=clip_id,
            )
        ]
    seen.add(clip_id)
    dropped: list[Rejection] = []
    raw_original = payload.get("original_data")
    original = raw_original if isinstance(raw_original, dict) else {}
    if raw_original is not None and not isinstance(raw_original, dict):
        dropped.append(
            _type_reject(source_file, row, clip_id, "original_data", raw_original, "an object")
        )
    texts_of: dict[str, str | None] = {}
    for name in TEXT_FIELDS:
        value = original.get(name)
        if value is None or isinstance(value, str):
            texts_of[name] = clean_text(value) or None
        else:
            texts_of[name] = None
            dropped.append(
                _type_reject(source_file, row, clip_id, f"original_data.{name}", value, "text")
            )
    tags = payload.get("tag") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        dropped.append(_type_reject(source_file, row, clip_id, "tag", tags, "a list of strings"))
        tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    tags = [clean_text(t) for t in tags if clean_text(t)]
    freesound_id = original.get("id")
    if freesound_id is None and meta is not None:
        freesound_id = meta.freesound_id(stem)
    raw_duration = payload.get("duration", original.get("duration"))
    if isinstance(raw_duration, int | float) and not isinstance(raw_duration, bool):
        duration = float(raw_duration)
    username = original.get("username")
    clip = ClipRecord(
        clip_id=clip_id,
        source=SOURCE,
        split=normalise_split(split),
        source_split=split,
        audio_path=audio_path,
        captions=captions,
        tags=tags,
        title=texts_of["title"],
        description=texts_of["description"],
        duration_s=duration,
        license=texts_of["license"],
        url=texts_of["download_url"],
        extra={
            k: v
            for k, v in {
                "freesound_id": None if freesound_id is None else str(freesound_id),
                "username": username if isinstance(username, str) else None,
            }.items()
            if v
        },
        source_file=str(source_file),
        source_row=row,
    )
    return [*dropped, clip]


def _type_reject(
    source_file: Path, row: int | None, clip_id: str, field: str, value: Any, wanted: str
) -> Rejection:
    return reject(
        SOURCE,
        source_file,
        row,
        "invalid_type",
        f"{field} is {type(value).__name__}, not {wanted}; field dropped, clip kept",
        field=field,
        record_id=clip_id,
        raw=json.dumps(value, default=str)[:500],
        action="field_dropped",
    )
