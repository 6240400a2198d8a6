"""Export and report stages: current, valid (and kept-or-unscored) items out of the warehouse."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import flow, task
from pydantic import BaseModel, ConfigDict, Field

from flows.stages.artifacts import StageReport, markdown_table, publish
from flows.stages.cache import (
    code_fingerprint,
    key_from_parameter,
    results_dir,
    stage_key,
    tables_fingerprint,
)
from pipeline.clap.report import clap_report
from pipeline.errors import ForgeError
from pipeline.storage import Warehouse
from pipeline.tasks import TASKS, TaskReport, export_task, report_task
from pipeline.tasks.common.plots import write_task_plots
from pipeline.viewer.reviews import ReviewSummary, review_summary

EXPORT_CODE = ("pipeline/tasks",)
NATIVE_FORMATS = "native"
EXPORT_READS = ("item_records", "item_filters", "item_reviews", "clips")


class ExportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    formats: list[str] = Field(
        default_factory=lambda: [NATIVE_FORMATS, "jsonl"],
        description=f"Export formats; '{NATIVE_FORMATS}' means each task's published format "
        "(auditorybench-csv, mellow-json, nlar-json).",
    )
    out_dir: str | None = Field(
        default=None, description="Default: <warehouse>/exports; one folder per task and format."
    )
    flat: bool = Field(
        default=False,
        description="Write straight into out_dir, not <out_dir>/<task>/<format> (one task and "
        "one format only: what `forge export --out` does).",
    )
    include_dropped: bool = False
    extra_columns: bool = Field(
        default=False, description="auditorybench-csv: our columns after the published ones."
    )


class ExportedFiles(BaseModel):
    """One task exported in one format: the stage's summary of that unit."""

    model_config = ConfigDict(extra="forbid")

    task: str
    format: str
    out_dir: str
    paths: list[str]


def export_dir(warehouse: Warehouse, settings: ExportSettings, task_id: str, fmt: str) -> Path:
    base = Path(settings.out_dir) if settings.out_dir else warehouse.root / "exports"
    return base if settings.flat else base / task_id / fmt


@task(name="export-task", cache_key_fn=key_from_parameter, persist_result=True)
def export_one(
    warehouse: str,
    task_id: str,
    fmt: str,
    out_dir: str,
    settings: ExportSettings,
    cache_key: str,
) -> list[str]:
    paths = export_task(
        Warehouse(warehouse),
        task_id,
        fmt,
        out_dir,
        include_dropped=settings.include_dropped,
        extra_columns=settings.extra_columns,
    )
    return [str(p) for p in paths]


def task_formats(task_id: str, formats: list[str]) -> list[str]:
    """`formats` with 'native' replaced by the task's own published format(s)."""
    expanded: list[str] = []
    for fmt in formats:
        expanded += list(TASKS[task_id].export_formats) if fmt == NATIVE_FORMATS else [fmt]
    return list(dict.fromkeys(expanded))


@flow(name="stage-export")
def export_stage(
    warehouse: str, tasks: list[str], settings: ExportSettings | None = None
) -> StageReport:
    """Export every task in every format; unchanged items and settings are not re-exported
    (unless the exported files are gone)."""
    wh = Warehouse(warehouse)
    settings = settings or ExportSettings()
    formats = {task_id: task_formats(task_id, settings.formats) for task_id in tasks}
    if settings.flat and sum(len(f) for f in formats.values()) > 1:
        raise ForgeError("export settings: flat=True writes one task in one format only")
    runner = export_one.with_options(result_storage=results_dir(wh))
    rows = []
    exported: list[ExportedFiles] = []
    for task_id in tasks:
        for fmt in formats[task_id]:
            out = export_dir(wh, settings, task_id, fmt)
            key = stage_key(
                "export",
                wh,
                task=task_id,
                fmt=fmt,
                out=str(out),
                include_dropped=settings.include_dropped,
                extra_columns=settings.extra_columns,
                reads=tables_fingerprint(wh, EXPORT_READS, f"task={task_id}"),
                clips=tables_fingerprint(wh, ("clips",)),
                code=code_fingerprint(*EXPORT_CODE),
            )
            # Files deleted since the cached export: write them again.
            paths = runner.with_options(refresh_cache=not out.exists())(
                str(wh.root), task_id, fmt, str(out), settings, key
            )
            exported.append(ExportedFiles(task=task_id, format=fmt, out_dir=str(out), paths=paths))
            rows.append(
                {
                    "task": task_id,
                    "format": fmt,
                    "files": len(paths),
                    "items": "valid (dropped too)"
                    if settings.include_dropped
                    else "valid, not dropped",
                    "out_dir": str(out),
                }
            )
    report = StageReport(
        stage="export", rows=rows, counts={"exports": len(rows)}, summaries=exported
    )
    return publish(report, "Exported files per task and format.")


class TaskReportOutput(BaseModel):
    """One task's report: the quality report and its full Markdown (with the CLAP part)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    report: TaskReport
    markdown: str
    figures_dir: str
    plots: list[str] = Field(default_factory=list)  # PNG files written (task plots + CLAP)
    reviews: ReviewSummary | None = None


@task(name="report-task")
def report_one(warehouse: str, task_id: str, figures_dir: str | None) -> TaskReportOutput:
    wh = Warehouse(warehouse)
    figures = Path(figures_dir) if figures_dir else wh.root / "reports" / task_id
    figures.mkdir(parents=True, exist_ok=True)
    report = report_task(wh, task_id)
    plots = write_task_plots(wh, task_id, figures)
    reviews = review_summary(wh, task_id)
    plot_lines = [f"![{p.stem}]({p.name})" for p in plots]
    markdown = "\n\n".join(
        [
            report.markdown(),
            reviews.markdown(),
            "## Plots\n\n" + ("\n".join(plot_lines) or "_nothing to plot_") + "\n",
            clap_report(wh, task_id, figures),
        ]
    )
    written = [*plots, *sorted(figures.glob(f"clap_scores_{task_id}_*.png"))]
    # the Markdown beside its plots (its image links are relative to this folder)
    report_md = figures / "report.md"
    partial = report_md.with_name(f".report.md.{os.getpid()}.partial")
    partial.write_text(markdown, encoding="utf-8")
    os.replace(partial, report_md)
    return TaskReportOutput(
        task=task_id,
        report=report,
        markdown=markdown,
        figures_dir=str(figures),
        plots=[str(p) for p in written],
        reviews=reviews,
    )


@flow(name="stage-report")
def report_stage(warehouse: str, tasks: list[str], figures_dir: str | None = None) -> StageReport:
    """Per-task reports (counts by split, label balance, duplicates, rejects by reason) and
    their CLAP part (kept/dropped per policy, score histograms as PNG under `figures_dir`,
    default `<warehouse>/reports/<task>/`)."""
    outputs = [report_one(warehouse, task_id, figures_dir) for task_id in tasks]
    rows = []
    for report in (o.report for o in outputs):
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
    plot_links = "\n".join(
        f"- {o.task}: "
        + ", ".join(f"[{Path(p).stem}]({Path(p).resolve().as_uri()})" for p in o.plots)
        for o in outputs
        if o.plots
    )
    reviews = [
        {
            "task": o.task,
            "reviewed": o.reviews.reviewed,
            "accepted": o.reviews.accepted,
            "rejected": o.reviews.rejected,
            "agree with filters": o.reviews.agree,
        }
        for o in outputs
        if o.reviews
    ]
    stage = StageReport(
        stage="report",
        rows=rows,
        markdown="## Plots (PNG files)\n\n"
        + (plot_links or "_none written_")
        + "\n\n## Human review\n\n"
        + markdown_table(reviews)
        + "\n\n"
        + "\n\n".join(o.markdown for o in outputs),
        counts={
            o.task: {"cross_split_duplicates": o.report.cross_split_duplicates} for o in outputs
        },
        summaries=outputs,
    )
    return publish(stage, "Task reports: items per split, labels, duplicates, rejects, CLAP.")
