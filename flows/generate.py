"""Task flows: generate one dataset task, export it, report on it.

Thin wiring over `pipeline.tasks` (generate_task / export_task / report_task); the
orchestration's `build` flow runs the same library calls as stages. The Markdown report is
published as a Prefect artifact and returned.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.ingest import current_run_id
from pipeline.clap.report import clap_report
from pipeline.llm import LLMConfig
from pipeline.storage import Warehouse
from pipeline.tasks import GenerateSummary, export_task, generate_task, report_task


@flow(name="generate-task")
def generate_flow(
    task: str,
    warehouse: str | None = None,
    backend: str | None = None,
    model: str | None = None,
    prompts_dir: str | None = None,
    seed: int = 0,
    splits: list[str] | None = None,
) -> GenerateSummary:
    """Generate one task's items into `item_records` (offline unless an endpoint is set)."""
    wh = Warehouse(warehouse)
    config = LLMConfig.from_env(backend=backend, model=model)  # type: ignore[arg-type]
    summary = generate_task(
        wh, task, config, current_run_id(), prompts_override=prompts_dir, seed=seed, splits=splits
    )
    get_run_logger().info(
        "%s: %d valid, %d rejected %s",
        task,
        summary.valid,
        summary.rejected,
        summary.rejected_by_reason,
    )
    report = report_task(wh, task)
    create_markdown_artifact(
        key=f"report-{task}", markdown=report.markdown(), description=f"Quality report: {task}"
    )
    return summary


@flow(name="export-task")
def export_flow(
    task: str,
    fmt: str,
    out_dir: str,
    warehouse: str | None = None,
    include_dropped: bool = False,
    extra_columns: bool = False,
) -> list[str]:
    """Write one task's current valid items in `fmt` under `out_dir`."""
    paths = export_task(
        Warehouse(warehouse),
        task,
        fmt,
        Path(out_dir),
        include_dropped=include_dropped,
        extra_columns=extra_columns,
    )
    return [str(p) for p in paths]


@flow(name="report-task")
def report_flow(task: str, warehouse: str | None = None, out: str | None = None) -> str:
    """The task's quality report as Markdown (also an artifact, and `out` if given).

    It ends with the CLAP section: kept/dropped counts per policy and score histograms,
    written as PNG beside `out` (or under `<warehouse>/reports/<task>/`).
    """
    wh = Warehouse(warehouse)
    figures_dir = Path(out).parent if out else wh.root / "reports" / task
    figures_dir.mkdir(parents=True, exist_ok=True)
    markdown = report_task(wh, task).markdown() + "\n\n" + clap_report(wh, task, figures_dir)
    create_markdown_artifact(
        key=f"report-{task}", markdown=markdown, description=f"Quality report: {task}"
    )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(markdown, encoding="utf-8")
    return markdown
