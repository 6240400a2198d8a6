"""Ingest flow: one source corpus into `clips` and `rejects`."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run

from pipeline.ingest import IngestSummary, ingest_source
from pipeline.samples import SAMPLE_PATHS, sample_audio_root
from pipeline.samples.audio import write_sample_audio
from pipeline.storage import Warehouse, new_run_id


def current_run_id() -> str:
    """The Prefect flow run id when inside a flow run, else a fresh id."""
    return str(flow_run.get_id() or new_run_id())


@task(name="ingest-source")
def ingest_source_task(
    warehouse: str, source: str, path: str, audio_root: str | None, run_id: str
) -> IngestSummary:
    summary = ingest_source(
        Warehouse(warehouse), source, Path(path), run_id, Path(audio_root) if audio_root else None
    )
    get_run_logger().info(
        "%s: %d clips, %d rejects %s",
        source,
        summary.clips,
        summary.rejects,
        summary.rejects_by_reason,
    )
    return summary


@flow(name="ingest")
def ingest_flow(
    source: str, path: str, audio_root: str | None = None, warehouse: str | None = None
) -> IngestSummary:
    wh = Warehouse(warehouse)
    summary = ingest_source_task(str(wh.root), source, path, audio_root, current_run_id())
    publish_ingest_artifact([summary])
    return summary


@flow(name="ingest-samples")
def ingest_samples_flow(warehouse: str | None = None) -> list[IngestSummary]:
    """Render the sample audio (once) and ingest every embedded sample corpus."""
    wh = Warehouse(warehouse)
    audio_dir = wh.root / "sample_audio"
    write_sample_audio(audio_dir)
    run_id = current_run_id()
    summaries = [
        ingest_source_task(
            str(wh.root), source, str(path), str(sample_audio_root(audio_dir, source)), run_id
        )
        for source, path in SAMPLE_PATHS.items()
    ]
    publish_ingest_artifact(summaries)
    return summaries


def publish_ingest_artifact(summaries: list[IngestSummary]) -> None:
    create_table_artifact(
        key="ingest-counts",
        table=[
            {
                "source": s.source,
                "clips": s.clips,
                "rejects": s.rejects,
                "rejects_by_reason": ", ".join(
                    f"{k}={v}" for k, v in sorted(s.rejects_by_reason.items())
                ),
            }
            for s in summaries
        ],
        description="Clips ingested and input rows rejected, by source and reason.",
    )
