"""LAION-Audio-630K, Freesound part.

Two layouts, both streamed clip by clip (never extracted, never fully in memory):

* a folder of per-clip JSON files (`<id>.json`, audio `<id>.flac` beside it), optionally
  with `freesound_meta.csv` (`audio_filename,freesound_id,...`) at its top;
* webdataset `.tar` shards of 512 pairs (`<id>.flac` at 48 kHz + `<id>.json`); the audio
  path of such a clip is `<shard path>#<member name>`.

The JSON holds `text` (captions), `tag` (list) and `original_data` (title, description,
license, username, download_url, id). A clip's split is its folder (`train`, `test`,
`valid`) when the path shows one.

Bad values never end an ingest: a field of the wrong type is dropped with a counted
reject (see pipeline.sources.laion630k_record, which turns one payload into a clip).

Shards must be plain `.tar`: the audio stages read a member by seeking inside the shard,
which a compressed stream (`.tar.gz`, `.tgz`, `.tar.bz2`, `.tar.xz`, `.tar.zst`, or a
`.tar` whose bytes are compressed) cannot do, so such a shard is rejected whole
(`compressed_shard`) with the advice to decompress it.
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
    normalise_split,
    reject,
)
from pipeline.sources.laion630k_record import SOURCE, clip_id_of, payload_record
from pipeline.sources.records import ClipRecord, Rejection

META_FILE = "freesound_meta.csv"
META_COLUMNS = ("audio_filename", "freesound_id")
AUDIO_EXTENSIONS = (".flac", ".wav", ".mp3", ".ogg")
COMPRESSED_SHARD_PATTERNS = ("*.tar.gz", "*.tgz", "*.tar.bz2", "*.tar.xz", "*.tar.zst")
# Leading bytes of gzip, bzip2, xz and zstd streams.
COMPRESSED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


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
    compressed = (
        sorted({p for pattern in COMPRESSED_SHARD_PATTERNS for p in path.rglob(pattern)})
        if path.is_dir()
        else [path] * _is_compressed_name(path)
    )
    for shard in compressed:
        yield _compressed_reject(shard)
    if compressed and not path.is_dir():
        return
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
                record_id=clip_id_of(json_path.stem),
            )
            continue
        except json.JSONDecodeError as exc:
            yield reject(
                SOURCE,
                json_path,
                None,
                "invalid_json",
                str(exc),
                record_id=clip_id_of(json_path.stem),
            )
            continue
        yield from payload_record(
            payload,
            json_path.stem,
            str(rel.parent / audio_rel.name) if audio_rel else None,
            json_path,
            None,
            _split_of(rel),
            seen,
            meta,
        )


def _is_compressed_name(path: Path) -> bool:
    return any(path.match(pattern) for pattern in COMPRESSED_SHARD_PATTERNS)


def _compressed_reject(shard: Path) -> Rejection:
    return reject(
        SOURCE,
        shard,
        None,
        "compressed_shard",
        "compressed tar shard: audio cannot be read from it by member; decompress it "
        "to a plain .tar (e.g. `gunzip`) and ingest again",
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


def _load_shard(shard: Path, base: Path, seen: set[str]) -> LoaderOutput:
    rel_shard = shard.relative_to(base)
    split = _split_of(rel_shard)
    pending: dict[str, dict[str, Any]] = {}
    member_no = 0
    with open(shard, "rb") as handle:
        head = handle.read(8)
    if head.startswith(COMPRESSED_MAGIC):
        yield _compressed_reject(shard)
        return
    try:
        with tarfile.open(shard, mode="r|") as stream:
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
            record_id=clip_id_of(name),
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
            record_id=clip_id_of(name),
        )
        return
    except json.JSONDecodeError as exc:
        yield reject(
            SOURCE, where, entry["row"], "invalid_json", str(exc), record_id=clip_id_of(name)
        )
        return
    audio = f"{rel_shard}#{entry.get('audio', stem + '.flac')}"
    yield from payload_record(
        payload, name, audio, shard, entry["row"], split, seen, None, duration=entry.get("duration")
    )
