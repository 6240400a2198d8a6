"""Ingest one source corpus into the warehouse's `clips` and `rejects` tables.

Loader output is streamed in batches into the source's partitions
(`clips/source=<name>`, `rejects/stage=ingest/source=<name>`), each replaced atomically
when the source has been read to the end: rerunning an ingest replaces exactly what the
previous ingest of that source wrote.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from pipeline.errors import ForgeError
from pipeline.sources import LOADERS, ClipRecord
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


def clips_partition(source: str) -> str:
    return f"source={source}"


def rejects_partition(source: str) -> str:
    return f"stage=ingest/source={source}"


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
    reasons: Counter[str] = Counter()
    now = utc_now()
    clip_batch: list[dict] = []
    reject_batch: list[dict] = []
    with (
        warehouse.writer("clips", clips_partition(source)) as clip_writer,
        warehouse.writer("rejects", rejects_partition(source)) as reject_writer,
    ):
        for record in LOADERS[source](path):
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
    return summary
