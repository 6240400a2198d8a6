"""Ingest one source corpus into the warehouse's `clips` and `rejects` tables.

Loader output is streamed in batches into the partitions of one source INSTANCE, the
source name plus the input path it was read from
(`clips/source=<name>/input=<path hash>`, `rejects/stage=ingest/source=<name>/input=<...>`),
each replaced atomically when the input has been read to the end. Rerunning an ingest of
the same input replaces exactly what the previous ingest of it wrote; two inputs of one
corpus (`--source laion630k=A --source laion630k=B`) are two instances and both are kept,
even when written concurrently. The flat partition `source=<name>` of warehouses written
before instances existed is removed when an instance of that source is written.

Audio paths are checked against the audio root here, where the root is known: a path that
resolves (through a symlink) outside the root is rejected (`unsafe_audio_path`), never
followed.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from pipeline import progress
from pipeline.errors import ForgeError
from pipeline.sources import LOADERS, ClipRecord, Rejection
from pipeline.sources.common import reject
from pipeline.storage import Warehouse
from pipeline.storage.warehouse import utc_now

BATCH_ROWS = 5_000


class IngestSummary(BaseModel):
    source: str
    path: str
    audio_root: str
    run_id: str
    clips: int = 0
    rejects: int = 0
    rejects_by_reason: dict[str, int] = Field(default_factory=dict)


def input_id(path: Path) -> str:
    """Short stable id of one input path (resolved): names its source instance."""
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]


def clips_partition(source: str, path: Path) -> str:
    return f"source={source}/input={input_id(path)}"


def rejects_partition(source: str, path: Path) -> str:
    return f"stage=ingest/source={source}/input={input_id(path)}"


def escapes_root(record: ClipRecord, root: Path, real_root: Path) -> str | None:
    """Why the clip's audio file resolves outside the audio root (a symlink out), else None.

    Paths are already relative and free of '..' (pipeline.sources.common.safe_audio_path);
    only a symlink on the way can lead out. Files that do not exist are fine here (the
    audio stages report them)."""
    member_path = record.audio_path.split("#", 1)[0]
    resolved = Path(os.path.realpath(root / member_path))
    if resolved.is_relative_to(real_root):
        return None
    return f"audio path {member_path!r} is a symlink to {resolved}, outside the audio root"


def checked(record: ClipRecord | Rejection, root: Path, real_root: Path) -> ClipRecord | Rejection:
    if not isinstance(record, ClipRecord):
        return record
    why = escapes_root(record, root, real_root)
    if why is None:
        return record
    return reject(
        record.source,
        Path(record.source_file),
        record.source_row,
        "unsafe_audio_path",
        why,
        field="audio_path",
        record_id=record.clip_id,
    )


def ingest_source(
    warehouse: Warehouse,
    source: str,
    path: Path,
    run_id: str,
    audio_root: Path | None = None,
) -> IngestSummary:
    if source not in LOADERS:
        raise ForgeError(f"unknown source '{source}'; choose one of {', '.join(LOADERS)}")
    path = Path(path).resolve()
    root = Path(audio_root).resolve() if audio_root else (path if path.is_dir() else path.parent)
    summary = IngestSummary(source=source, path=str(path), audio_root=str(root), run_id=run_id)
    real_root = Path(os.path.realpath(root))
    reasons: Counter[str] = Counter()
    now = utc_now()
    clip_batch: list[dict] = []
    reject_batch: list[dict] = []
    with (
        warehouse.writer("clips", clips_partition(source, path)) as clip_writer,
        warehouse.writer("rejects", rejects_partition(source, path)) as reject_writer,
        progress.step(f"ingest {source}", unit="row") as advance,
    ):
        for loaded in LOADERS[source](path):
            record = checked(loaded, root, real_root)
            advance(1, rejected=int(not isinstance(record, ClipRecord)))
            if isinstance(record, ClipRecord):
                record.audio_root = str(root)
                clip_batch.append(record.to_row(run_id, now))
                if len(clip_batch) >= BATCH_ROWS:
                    summary.clips += clip_writer.write(clip_batch)
                    clip_batch.clear()
            else:
                reasons[record.reason] += 1
                reject_batch.append(record.to_row(run_id, now))
                if len(reject_batch) >= BATCH_ROWS:
                    summary.rejects += reject_writer.write(reject_batch)
                    reject_batch.clear()
        summary.clips += clip_writer.write(clip_batch)
        summary.rejects += reject_writer.write(reject_batch)
    summary.rejects_by_reason = dict(reasons)
    warehouse.delete_partition("clips", f"source={source}")  # pre-instance layout
    warehouse.delete_partition("rejects", f"stage=ingest/source={source}")
    return summary
