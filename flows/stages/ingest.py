"""Ingest stage: source corpora into `clips` (bad rows into `rejects`), one task per source.

Each source instance (name + input path) is one cached task. Its cached result is reused
only while the partitions it wrote are on disk: after `make clean` (which keeps
`prefect_results/` but removes `data/`) the source is read again.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from pydantic import BaseModel, ConfigDict

from flows.runs import current_run_id
from flows.stages.artifacts import StageReport, publish, summary_row
from flows.stages.cache import code_fingerprint, inputs_fingerprint, key_from_parameter, results_dir
from flows.stages.cache import stage_key as make_key
from pipeline.ingest import IngestSummary, clips_partition, ingest_source, rejects_partition
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.samples.audio import write_sample_audio
from pipeline.storage import Warehouse

INGEST_CODE = ("pipeline/sources", "pipeline/ingest.py")


class SourceInput(BaseModel):
    """One corpus to ingest: its metadata path and the folder its audio paths start from."""

    model_config = ConfigDict(extra="forbid")

    source: str
    path: str
    audio_root: str | None = None


def sample_sources(warehouse: Warehouse) -> list[SourceInput]:
    """The embedded sample corpora, with their synthetic audio rendered under the warehouse."""
    audio_dir = warehouse.root / "sample_audio"
    write_sample_audio(audio_dir)  # skips files that exist
    return [
        SourceInput(
            source=source, path=str(path), audio_root=str(sample_audio_root(audio_dir, source))
        )
        for source, path in SAMPLE_PATHS.items()
    ]


@task(name="ingest-source", cache_key_fn=key_from_parameter, persist_result=True)
def ingest_one(warehouse: str, source: SourceInput, run_id: str, cache_key: str) -> IngestSummary:
    return ingest_source(
        Warehouse(warehouse),
        source.source,
        Path(source.path),
        run_id,
        Path(source.audio_root) if source.audio_root else None,
    )


def ingest_key(warehouse: Warehouse, source: SourceInput) -> str:
    # The metadata files' content is the input (audio and shards by their stat, never read:
    # the audio stages read audio later).
    return make_key(
        "ingest",
        warehouse,
        source=source,
        inputs=inputs_fingerprint([source.path], warehouse),
        code=code_fingerprint(*INGEST_CODE),
    )


def outputs_missing(warehouse: Warehouse, source: SourceInput) -> bool:
    """Whether the partitions an ingest of `source` writes are gone (or never written)."""
    path = Path(source.path)
    return not (
        warehouse.partition_path("clips", clips_partition(source.source, path)).exists()
        and warehouse.partition_path("rejects", rejects_partition(source.source, path)).exists()
    )


@flow(name="stage-ingest")
def ingest_stage(
    warehouse: str, run_id: str | None = None, sources: list[SourceInput] | None = None
) -> StageReport:
    """Ingest `sources` (default: the embedded samples); unchanged inputs are not re-read.
    `run_id` None: this flow run's id (`forge ingest` runs the stage on its own)."""
    wh = Warehouse(warehouse)
    run_id = run_id or current_run_id()
    chosen = sources if sources is not None else sample_sources(wh)
    wh.ensure_catalog()  # once here, not racing in every concurrent task of a fresh warehouse
    cached = ingest_one.with_options(result_storage=results_dir(wh))
    futures = [
        (cached.with_options(refresh_cache=True) if outputs_missing(wh, source) else cached).submit(
            str(wh.root), source, run_id, ingest_key(wh, source)
        )
        for source in chosen
    ]
    summaries: list[IngestSummary] = [f.result() for f in futures]
    report = StageReport(
        stage="ingest",
        rows=[summary_row(s, stage="ingest") for s in summaries],
        counts={
            "clips": sum(s.clips for s in summaries),
            "rejects": sum(s.rejects for s in summaries),
        },
    )
    report.markdown = "\n".join(
        f"- **{s.source}**: {s.clips} clips, {s.rejects} rejected rows"
        + (f" ({s.rejects_by_reason})" if s.rejects else "")
        for s in summaries
    )
    report.summaries = summaries
    return publish(report, "Clips ingested and input rows rejected, by source and reason.")
