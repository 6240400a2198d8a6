"""LAION-Audio-630K, Freesound part.

Two layouts, both streamed clip by clip (never extracted, never fully in memory):

* a folder of per-clip JSON files (`<id>.json`, audio `<id>.flac` beside it), optionally
  with `freesound_meta.csv` (`audio_filename,freesound_id,...`) at its top;
* webdataset `.tar` shards of 512 pairs (`<id>.flac` at 48 kHz + `<id>.json`); the audio
  path of such a clip is `<shard path>#<member name>`.

The JSON holds `text` (captions), `tag` (list) and `original_data` (title, description,
license, username, download_url, id). A clip's split is its folder (`train`, `test`,
`valid`) when the path shows one.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from pipeline.errors import InputFormatError
from pipeline.sources.common import (
    LoaderOutput,
    UnsafeAudioPath,
    clean_text,
    normalise_split,
    reject,
    safe_audio_path,
)
from pipeline.sources.records import ClipRecord, Rejection

SOURCE = "laion630k"
META_FILE = "freesound_meta.csv"
META_COLUMNS = ("audio_filename", "freesound_id")
AUDIO_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg")


class FreesoundMeta:
    """`freesound_meta.csv`: audio stem → freesound id, for JSON files that lack `original_data.id`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"audio_filename": pa.string(), "freesound_id": pa.string()}
                ),
            )
        except pa.ArrowInvalid as exc:
            raise InputFormatError(path, f"cannot parse CSV: {exc}") from exc
        missing = [c for c in META_COLUMNS if c not in table.column_names]
        if missing:
            raise InputFormatError(
                path,
                f"missing required column(s) {', '.join(missing)}; "
                f"found {', '.join(table.column_names)}",
                field=missing[0],
            )
        self._table = table.select(list(META_COLUMNS))
        self._by_stem: dict[str, str] | None = None

    def freesound_id(self, stem: str) -> str | None:
        if self._by_stem is None:  # built on first need only: most JSON files carry the id
            names = self._table["audio_filename"].to_pylist()
            ids = self._table["freesound_id"].to_pylist()
            self._by_stem = {Path(n).stem: i for n, i in zip(names, ids, strict=True) if n}
        return self._by_stem.get(stem)


def load(path: Path) -> LoaderOutput:
    if not path.exists():
        raise InputFormatError(path, "path not found")
    shards = sorted(path.rglob("*.tar")) if path.is_dir() else [path]
    base = path if path.is_dir() else path.parent
    meta_path = base / META_FILE
    meta = FreesoundMeta(meta_path) if meta_path.is_file() else None
    seen: set[str] = set()
    if shards and shards[0].suffix == ".tar":
        for shard in shards:
            yield from _load_shard(shard, base, seen)
        return
    json_files = sorted(path.rglob("*.json"))
    if not json_files:
        raise InputFormatError(path, "no .tar shards and no per-clip .json files found")
    for json_path in json_files:
        rel = json_path.relative_to(base)
        audio_rel = _audio_beside(json_path, base)
        try:
            payload = json.loads(json_path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield reject(
                SOURCE,
                json_path,
                None,
                "undecodable_bytes",
                f"not UTF-8: {exc}",
                record_id=_clip_id(json_path.stem),
            )
            continue
        except json.JSONDecodeError as exc:
            yield reject(
                SOURCE,
                json_path,
                None,
                "invalid_json",
                str(exc),
                record_id=_clip_id(json_path.stem),
            )
            continue
        yield _record(
            payload,
            json_path.stem,
            str(rel.parent / audio_rel.name) if audio_rel else None,
            json_path,
            None,
            _split_of(rel),
            seen,
            meta,
        )


def _audio_beside(json_path: Path, base: Path) -> Path | None:
    for ext in AUDIO_EXTENSIONS:
        candidate = json_path.with_suffix(ext)
        if candidate.exists():
            return candidate.relative_to(base)
    return json_path.with_suffix(".flac").relative_to(base)


def _split_of(rel: Path) -> str | None:
    for part in rel.parts[:-1]:
        if normalise_split(part):
            return part
    return None


def _clip_id(stem: str) -> str:
    return f"{SOURCE}:{stem}"


def _load_shard(shard: Path, base: Path, seen: set[str]) -> LoaderOutput:
    rel_shard = shard.relative_to(base)
    split = _split_of(rel_shard)
    pending: dict[str, dict[str, Any]] = {}
    member_no = 0
    try:
        with tarfile.open(shard, mode="r|*") as stream:
            for member in stream:
                if not member.isfile():
                    continue
                member_no += 1
                stem, _, ext = member.name.rpartition(".")
                entry = pending.setdefault(stem, {"row": member_no})
                handle = stream.extractfile(member)
                data = handle.read() if handle else b""
                if ext == "json":
                    entry["json"] = data
                elif "." + ext in AUDIO_EXTENSIONS:
                    entry["audio"] = member.name
                    entry["duration"] = _duration(data)
                # A webdataset sample is contiguous: once a new stem starts, older ones are done.
                for done in [s for s in pending if s != stem]:
                    yield from _shard_record(pending.pop(done), done, rel_shard, shard, split, seen)
            end_offset = stream.offset
    except tarfile.TarError as exc:
        yield reject(
            SOURCE,
            shard,
            member_no or None,
            "unreadable_shard",
            f"tar shard is corrupt after member {member_no}: {exc}",
        )
    else:
        # tarfile stops quietly at a damaged header; what follows the last member must be padding.
        if shard.suffix == ".tar" and _has_trailing_data(shard, end_offset):
            yield reject(
                SOURCE,
                shard,
                member_no or None,
                "unreadable_shard",
                f"tar shard is corrupt after member {member_no}: data after the last "
                "readable member is not a tar header",
            )
    for stem, entry in pending.items():
        yield from _shard_record(entry, stem, rel_shard, shard, split, seen)


def _has_trailing_data(shard: Path, offset: int) -> bool:
    with open(shard, "rb") as handle:
        handle.seek(offset)
        while chunk := handle.read(1 << 20):
            if chunk.strip(b"\0"):
                return True
    return False


def _duration(data: bytes) -> float | None:
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception:  # an unreadable audio member is reported when audio is decoded
        return None
    return float(info.duration)


def _shard_record(
    entry: dict[str, Any],
    stem: str,
    rel_shard: Path,
    shard: Path,
    split: str | None,
    seen: set[str],
) -> Iterator[ClipRecord | Rejection]:
    name = stem.rpartition("/")[2]
    where = f"{shard}#{stem}.json"
    if "json" not in entry:
        yield reject(
            SOURCE,
            shard,
            entry["row"],
            "missing_json",
            f"{stem} has audio but no .json",
            record_id=_clip_id(name),
        )
        return
    try:
        payload = json.loads(entry["json"].decode("utf-8"))
    except UnicodeDecodeError as exc:
        yield reject(
            SOURCE,
            where,
            entry["row"],
            "undecodable_bytes",
            f"not UTF-8: {exc}",
            record_id=_clip_id(name),
        )
        return
    except json.JSONDecodeError as exc:
        yield reject(
            SOURCE, where, entry["row"], "invalid_json", str(exc), record_id=_clip_id(name)
        )
        return
    audio = f"{rel_shard}#{entry.get('audio', stem + '.flac')}"
    record = _record(
        payload, name, audio, shard, entry["row"], split, seen, None, duration=entry.get("duration")
    )
    yield record


def _record(
    payload: Any,
    stem: str,
    audio_rel: str | None,
    source_file: Path,
    row: int | None,
    split: str | None,
    seen: set[str],
    meta: FreesoundMeta | None,
    duration: float | None = None,
) -> ClipRecord | Rejection:
    clip_id = _clip_id(stem)
    if not isinstance(payload, dict):
        return reject(
            SOURCE,
            source_file,
            row,
            "invalid_json",
            "top level is not an object",
            record_id=clip_id,
        )
    texts = payload.get("text")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list):
        return reject(
            SOURCE,
            source_file,
            row,
            "invalid_value",
            "'text' is not a list of captions",
            field="text",
            record_id=clip_id,
            raw=json.dumps(payload)[:500],
        )
    captions = [clean_text(t) for t in texts if isinstance(t, str) and clean_text(t)]
    if not captions:
        return reject(
            SOURCE,
            source_file,
            row,
            "empty_caption",
            "no non-empty caption in 'text'",
            field="text",
            record_id=clip_id,
            raw=json.dumps(payload)[:500],
        )
    audio_field = payload.get("audio_path")
    try:
        audio_path = safe_audio_path(
            audio_field if isinstance(audio_field, str) else audio_rel or ""
        )
    except UnsafeAudioPath as exc:
        return reject(
            SOURCE,
            source_file,
            row,
            "unsafe_audio_path",
            str(exc),
            field="audio_path",
            record_id=clip_id,
        )
    if clip_id in seen:
        return reject(
            SOURCE,
            source_file,
            row,
            "duplicate_id",
            f"clip {stem} appears more than once",
            record_id=clip_id,
        )
    seen.add(clip_id)
    original = (
        payload.get("original_data") if isinstance(payload.get("original_data"), dict) else {}
    )
    tags = payload.get("tag") or []
    tags = [
        clean_text(t) for t in (tags if isinstance(tags, list) else [tags]) if clean_text(str(t))
    ]
    freesound_id = original.get("id")
    if freesound_id is None and meta is not None:
        freesound_id = meta.freesound_id(stem)
    raw_duration = payload.get("duration", original.get("duration"))
    if isinstance(raw_duration, int | float):
        duration = float(raw_duration)
    return ClipRecord(
        clip_id=clip_id,
        source=SOURCE,
        split=normalise_split(split),
        source_split=split,
        audio_path=audio_path,
        captions=captions,
        tags=[str(t) for t in tags],
        title=clean_text(original.get("title")) or None,
        description=clean_text(original.get("description")) or None,
        duration_s=duration,
        license=clean_text(original.get("license")) or None,
        url=clean_text(original.get("download_url")) or None,
        extra={
            k: v
            for k, v in {
                "freesound_id": None if freesound_id is None else str(freesound_id),
                "username": original.get("username"),
            }.items()
            if v
        },
        source_file=str(source_file),
        source_row=row,
    )
