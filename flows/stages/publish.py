"""Export and report stages: current, valid (and kept-or-unscored) items out of the warehouse."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from pydantic import BaseModel, ConfigDict, Field

from flows.stages.artifacts import StageReport, publish
from flows.stages.cache import (
    code_fingerprint,
    key_from_parameter,
    results_dir,
    stage_key,
    tables_fingerprint,
)
from pipeline.storage import Warehouse
from pipeline.tasks import TaskReport, export_task, report_task

EXPORT_CODE = ("pipeline/tasks",)
EXPORT_READS = ("item_records", "item_filters", "clips")


class ExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[str] = Field(default_factory=lambda: ["jsonl"])
    out_dir: str | None = Field(
        default=None, description="Default: <warehouse>/exports; one folder per task and format."
    )
    include_dropped: bool = False


def export_dir(warehouse: Warehouse, settings: ExportSettings, task_id: str, fmt: str) -> Path:
    base = Path(settings.out_dir) if settings.out_dir else warehouse.root / "exports"
    return base / task_id / fmt


@task(name="export-task", cache_key_fn=key_from_parameter, persist_result=True)
def export_one(
    warehouse: str, task_id: str, fmt: str, out_dir: str, include_dropped: bool, cache_key: str
) -> list[str]:
    paths = export_task(Warehouse(warehouse), task_id, fmt, out_dir, include_dropped)
    return [str(p) for p in paths]


@flow(name="stage-export")
def export_stage(
    warehouse: str, tasks: list[str], settings: ExportSettings | None = None
) -> StageReport:
    """Export every task in every format; unchanged items and settings are not re-exported
    (unless the exported files are gone)."""
    wh = Warehouse(warehouse)
    settings = settings or ExportSettings()
    runner = export_one.with_options(result_storage=results_dir(wh))
    rows = []
    for task_id in tasks:
        include_dropped = settings.include_dropped
        for fmt in settings.formats:
            out = export_dir(wh, settings, task_id, fmt)
            key = stage_key(
                "export",
                wh,
                task=task_id,
                fmt=fmt,
                out=str(out),
                include_dropped=include_dropped,
                reads=tables_fingerprint(wh, EXPORT_READS, f"task={task_id}"),
                clips=tables_fingerprint(wh, ("clips",)),
                code=code_fingerprint(*EXPORT_CODE),
            )
            # Files deleted since the cached export: write them again.
            paths = runner.with_options(refresh_cache=not out.exists())(
                str(wh.root), task_id, fmt, str(out), include_dropped, key
            )
            rows.append(
                {
                    "task": task_id,
                    "format": fmt,
                    "files": len(paths),
                    "items": "valid (dropped too)" if include_dropped else "valid, not dropped",
                    "out_dir": str(out),
                }
            )
    report = StageReport(stage="export", rows=rows, counts={"exports": len(rows)})
    return publish(report, "Exported files per task and format.")


@task(name="report-task")
def report_one(warehouse: str, task_id: str) -> TaskReport:
    return report_task(Warehouse(warehouse), task_id)


@flow(name="stage-report")
def report_stage(warehouse: str, tasks: list[str]) -> StageReport:
    """Per-task reports (counts by split, label balance, duplicates, rejects by reason)."""
    reports = [report_one(warehouse, task_id) for task_id in tasks]
    rows = []
    for report in reports:
        for split in report.splits:
            rows.append(
                {
                    "task": report.task,
                    "split": split.split,
                    "items": split.items,
                    "valid": split.valid,
                    "rejected": split.rejected,
                    "duplicates": split.duplicates_exact + split.duplicates_normalized,
                    "rejects_by_reason": ", ".join(
                        f"{k}={v}" for k, v in sorted(split.rejects_by_reason.items())
                    ),
                    "labels": ", ".join(f"{k}={v}" for k, v in sorted(split.labels.items())),
                }
            )
    stage = StageReport(
        stage="report",
        rows=rows,
        markdown="\n\n".join(r.markdown() for r in reports),
        counts={r.task: {"cross_split_duplicates": r.cross_split_duplicates} for r in reports},
    )
    return publish(stage, "Task reports: items per split, labels, duplicates, rejects.")
